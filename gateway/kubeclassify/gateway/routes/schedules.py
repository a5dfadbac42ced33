"""Daily schedules over the configured manifest: create, list with last and next date, pause,
resume, run one date now, and all of a schedule's results as one CSV; with either batch backend."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from kubeclassify.core.cron import shortest_gap
from kubeclassify.core.resources.classification_batch import ScheduleSpec
from kubeclassify.gateway.accounts import User
from kubeclassify.gateway.backends import ScheduleBackend
from kubeclassify.gateway.catalog import Catalog, model_exists
from kubeclassify.gateway.config import GatewayConfig
from kubeclassify.gateway.deps import (
    CatalogDep,
    ConfigDep,
    CurrentUser,
    ScheduleBackendDep,
    SchedulesDep,
    StoreDep,
    owned,
)
from kubeclassify.gateway.errors import SIGNED_IN, problems
from kubeclassify.gateway.inputs import check_webhook_url
from kubeclassify.gateway.results import merged_csv, with_label
from kubeclassify.gateway.schedules import (
    NothingDue,
    OutOfCredits,
    RunInProgress,
    ScheduleRecord,
    Schedules,
    new_schedule_name,
)
from kubeclassify.gateway.schemas import (
    FiredInfo,
    LabelFilter,
    RunInfo,
    ScheduleEdit,
    ScheduleInfo,
    ScheduleRequest,
    ScheduleRun,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["schedules"], responses=SIGNED_IN)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _every(gap: dt.timedelta) -> str:
    minutes = int(gap.total_seconds() // 60)
    return f"every {minutes // 60} h" if minutes % 60 == 0 and minutes else f"every {minutes} min"


@router.post(
    "/schedules",
    status_code=201,
    response_model=ScheduleInfo,
    summary="Create a daily schedule",
    responses=problems(404, 409, 413),
)
async def create_schedule(
    body: ScheduleRequest,
    user: CurrentUser,
    config: ConfigDep,
    schedules: SchedulesDep,
    backend: ScheduleBackendDep,
    catalog: CatalogDep,
) -> Any:
    """Make a daily schedule over the configured manifest: a cron and time zone, an optional start
    date and catch-up, a model. Each run classifies the next date (yesterday in the schedule's zone,
    or day by day with catch_up), skips a day without images, and is paid for when it starts."""
    _check_timing(body.cron, body.time_zone, body.start_date, body.catch_up, user, config)
    if not user.is_admin and len(await schedules.of(user.username)) >= config.max_schedules:
        raise HTTPException(409, f"you have {config.max_schedules} schedules, the most allowed: delete one")
    model = await _check_model(body.model or config.default_model, catalog)
    if body.webhook_url:
        await _check_webhook(body.webhook_url, config)
    record = ScheduleRecord(
        name=new_schedule_name(user.username),
        owner=user.username,
        model=model,
        cron=body.cron,
        time_zone=body.time_zone,
        start_date=body.start_date.isoformat() if body.start_date else None,
        catch_up=body.catch_up,
        webhook_url=body.webhook_url,
    )
    try:
        await backend.create(record)
    except Exception as e:  # the Kubernetes API refused or is away
        log.warning("a schedule could not be created", extra={"schedule": record.name, "error": str(e)})
        raise HTTPException(503, "the schedule could not be created; try again") from e
    return record.public(_now())


@router.get("/schedules", response_model=list[ScheduleInfo], summary="My schedules")
async def list_schedules(user: CurrentUser, schedules: SchedulesDep) -> Any:
    """My schedules, each with its last and next date and its next run."""
    now = _now()
    return [s.public(now) for s in await schedules.of(user.username)]


@router.get("/schedules/{name}", response_model=ScheduleInfo, summary="A schedule", responses=problems(404))
async def get_schedule(name: str, user: CurrentUser, schedules: SchedulesDep) -> Any:
    """A schedule, with its last and next date and next run."""
    return owned(await schedules.get(name), user, f"schedule {name!r}").public(_now())


def _check_timing(
    cron: str,
    time_zone: str,
    start_date: dt.date | None,
    catch_up: bool,
    user: User,
    config: GatewayConfig,
) -> None:
    """A cron and time zone a schedule can use: valid, and not firing more often than allowed."""
    try:
        ScheduleSpec(cron=cron, time_zone=time_zone, start_date=start_date, catch_up=catch_up)
    except ValidationError as e:
        raise HTTPException(422, "; ".join(err["msg"] for err in e.errors())) from e
    if not user.is_admin:
        gap = shortest_gap(cron, time_zone, _now())
        if gap < dt.timedelta(seconds=config.min_schedule_interval):
            raise HTTPException(
                422,
                f"cron {cron!r} fires {_every(gap)}; schedules may fire at most every"
                f" {_every(dt.timedelta(seconds=config.min_schedule_interval)).removeprefix('every ')}",
            )


async def _check_model(model: str | None, catalog: Catalog) -> str:
    if model is None or not await model_exists(catalog, model):
        raise HTTPException(404, f"no model {model!r}")
    return model


async def _check_webhook(url: str, config: GatewayConfig) -> None:
    if config.batch_backend == "kubernetes":
        raise HTTPException(422, "webhook_url: schedules send webhooks with the local batch backend only")
    await check_webhook_url(url, config)


@router.patch(
    "/schedules/{name}",
    response_model=ScheduleInfo,
    summary="Change a schedule's cron, time zone, catch-up, model or webhook",
    responses=problems(404, 413),
)
async def edit_schedule(
    name: str,
    body: ScheduleEdit,
    user: CurrentUser,
    config: ConfigDep,
    schedules: SchedulesDep,
    backend: ScheduleBackendDep,
    catalog: CatalogDep,
) -> Any:
    """Change what is sent of a schedule (cron, time_zone, catch_up, model, webhook_url; an empty
    webhook_url removes it), checked as when it was made. A run that is going ends as it was
    started; the next firing follows the change. The dates already done stay done."""
    record = owned(await schedules.get(name), user, f"schedule {name!r}")
    cron = body.cron or record.cron
    time_zone = body.time_zone or record.time_zone
    catch_up = record.catch_up if body.catch_up is None else body.catch_up
    start = dt.date.fromisoformat(record.start_date) if record.start_date else None
    _check_timing(cron, time_zone, start, catch_up, user, config)
    model = await _check_model(body.model, catalog) if body.model else record.model
    if body.webhook_url:
        await _check_webhook(body.webhook_url, config)
    webhook_url = record.webhook_url if body.webhook_url is None else body.webhook_url or None

    def edit(s: ScheduleRecord) -> None:
        s.cron, s.time_zone, s.catch_up = cron, time_zone, catch_up
        s.model, s.webhook_url = model, webhook_url

    edit(record)
    try:
        await backend.update(record, edit)
    except Exception as e:  # the Kubernetes API refused or is away: the schedule is as it was
        log.warning("a schedule could not be changed", extra={"schedule": name, "error": str(e)})
        raise HTTPException(503, "the schedule could not be changed; try again") from e
    return owned(await schedules.get(name), user, f"schedule {name!r}").public(_now())


async def _set_paused(
    name: str, user: User, schedules: Schedules, backend: ScheduleBackend, paused: bool
) -> Any:
    record = owned(await schedules.get(name), user, f"schedule {name!r}")
    await backend.set_paused(record, paused)
    return record.public(_now())


@router.delete("/schedules/{name}", status_code=204, summary="Delete a schedule", responses=problems(404))
async def delete_schedule(
    name: str, user: CurrentUser, schedules: SchedulesDep, backend: ScheduleBackendDep
) -> None:
    """Delete a schedule: it fires no more (a run that is going ends as it would); its runs' batches
    and results stay."""
    record = owned(await schedules.get(name), user, f"schedule {name!r}")
    await backend.delete(record)


@router.post(
    "/schedules/{name}/pause",
    response_model=ScheduleInfo,
    summary="Pause a schedule",
    responses=problems(404, 413),
)
async def pause(name: str, user: CurrentUser, schedules: SchedulesDep, backend: ScheduleBackendDep) -> Any:
    """Pause a schedule: no run starts until it is resumed."""
    return await _set_paused(name, user, schedules, backend, True)


@router.post(
    "/schedules/{name}/resume",
    response_model=ScheduleInfo,
    summary="Resume a schedule",
    responses=problems(404, 413),
)
async def resume(name: str, user: CurrentUser, schedules: SchedulesDep, backend: ScheduleBackendDep) -> Any:
    """Resume a paused schedule."""
    return await _set_paused(name, user, schedules, backend, False)


@router.post(
    "/schedules/{name}/run",
    status_code=202,
    response_model=RunInfo,
    summary="Run the schedule for one date now",
    responses=problems(402, 404, 409, 413),
)
async def run_now(
    name: str,
    user: CurrentUser,
    schedules: SchedulesDep,
    backend: ScheduleBackendDep,
    date: Annotated[dt.date, Body(embed=True, description="The date to process.")],
) -> Any:
    """Run a schedule for one date now (`{"date": "YYYY-MM-DD"}`), as a batch."""
    record = owned(await schedules.get(name), user, f"schedule {name!r}")
    try:
        batch = await backend.run(record, date)
    except OutOfCredits as e:
        raise HTTPException(402, str(e)) from e
    except RunInProgress as e:
        raise HTTPException(409, f"schedule {name}: {e}; runs of a schedule never overlap") from e
    if batch is None:
        raise HTTPException(422, f"the manifest lists no images for {date}")
    return {"schedule": record.name, "date": date.isoformat(), "batch": batch}


@router.get(
    "/schedules/{name}/runs",
    response_model=list[ScheduleRun],
    summary="A schedule's runs, newest first",
    responses=problems(404),
)
async def schedule_runs(
    name: str,
    user: CurrentUser,
    schedules: SchedulesDep,
    backend: ScheduleBackendDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Any:
    """A schedule's last runs, newest first: each one's date, batch, state and counts (with the
    kubernetes backend, those its ClassificationBatch keeps in its status)."""
    record = owned(await schedules.get(name), user, f"schedule {name!r}")
    return await backend.history(record, limit)


@router.post(
    "/schedules/{name}/fire",
    status_code=202,
    response_model=FiredInfo,
    summary="Fire the schedule now, as its cron would",
    responses=problems(402, 404, 409, 413),
)
async def fire_now(name: str, user: CurrentUser, schedules: SchedulesDep, backend: ScheduleBackendDep) -> Any:
    """Fire the schedule now, as its cron would: its next due date runs (yesterday in its time
    zone, or with catch_up the day after the last one done), or is done at once when it has no
    images. 409 while it is paused, a run of it is going, or every day up to yesterday is done."""
    record = owned(await schedules.get(name), user, f"schedule {name!r}")
    if record.paused:
        raise HTTPException(409, f"schedule {name} is paused ({record.reason}): resume it first")
    try:
        fired = await backend.fire_now(record)
    except OutOfCredits as e:
        raise HTTPException(402, str(e)) from e
    except RunInProgress as e:
        raise HTTPException(409, f"schedule {name}: {e}; runs of a schedule never overlap") from e
    except NothingDue as e:
        raise HTTPException(409, f"schedule {name}: nothing is due: {e}") from e
    if fired is None:
        return {"schedule": name, "date": None, "batch": name}
    return {"schedule": name, "date": fired.date.isoformat(), "batch": fired.batch}


@router.get(
    "/schedules/{name}/results.csv",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "Every finished run's rows."},
        **problems(404, 409),
    },
    summary="All results of a schedule as one CSV, oldest run first",
)
async def schedule_results(
    name: str,
    user: CurrentUser,
    schedules: SchedulesDep,
    backend: ScheduleBackendDep,
    store: StoreDep,
    label: LabelFilter = None,
) -> Any:
    """Every finished run of a schedule as one CSV, oldest first, streamed; with `label`, only the
    rows with that top label."""
    record = owned(await schedules.get(name), user, f"schedule {name!r}")
    outputs = await backend.outputs(record)
    rows = merged_csv(store, outputs, with_label(label))
    headers = {"Content-Disposition": f'attachment; filename="{record.name}.csv"'}
    return StreamingResponse(rows, media_type="text/csv", headers=headers)
