"""Daily schedules over the configured manifest: create, list with last and next date, pause,
resume, run one date now, and all of a schedule's results as one CSV. Local batch backend only."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, ValidationError

from kubeclassify.core.resources.classification_batch import ScheduleSpec
from kubeclassify.core.storage import ObjectNotFound, ObjectStore
from kubeclassify.gateway.accounts import User
from kubeclassify.gateway.batches import Batches
from kubeclassify.gateway.deps import AccountsDep, ConfigDep, CurrentUser
from kubeclassify.gateway.errors import problems
from kubeclassify.gateway.routes.batches import BatchInfo, check_webhook_url, model_exists
from kubeclassify.gateway.schedules import ScheduleRecord, Schedules, new_schedule_name, run_date

router = APIRouter(prefix="/v1", tags=["schedules"], responses=problems("4XX"))


class ScheduleRequest(BaseModel):
    cron: str = Field(max_length=100, description="When runs start, e.g. '30 1 * * *' ('* * * * *' to try).")
    time_zone: str = Field("UTC", max_length=64, description="IANA time zone of the cron and of dates.")
    start_date: dt.date | None = Field(None, description="The first date to process (default: yesterday).")
    catch_up: bool = Field(False, description="Process missed days one by one instead of skipping them.")
    model: str | None = Field(None, max_length=63, description="A model (default: the default).")
    webhook_url: str | None = Field(None, max_length=2048, description="Told when each run ends.")


class ScheduleInfo(BaseModel):
    name: str
    owner: str
    model: str
    cron: str
    time_zone: str
    start_date: str | None
    catch_up: bool
    paused: bool
    reason: str = Field(description="Why the schedule is paused, when it is.")
    last_date: str | None = Field(description="The last date processed (or skipped: no images).")
    next_date: str = Field(description="The date the next run processes.")
    next_run: str | None = Field(description="When the next run starts (none while paused).")
    created: float


def _local(request: Request) -> Any:
    scheduler = getattr(request.app.state, "scheduler", None)
    if scheduler is None:
        raise HTTPException(409, "schedules run with the local batch backend only")
    if request.app.state.config.manifest is None:
        raise HTTPException(409, "no manifest is configured here, so there is nothing to schedule")
    return scheduler


async def _mine(name: str, user: User, schedules: Schedules) -> ScheduleRecord:
    record = await schedules.get(name)
    if record is None or (record.owner != user.username and not user.is_admin):
        raise HTTPException(404, f"no schedule {name!r}")
    return record


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@router.post("/schedules", status_code=201, response_model=ScheduleInfo, summary="Create a daily schedule")
async def create_schedule(
    body: ScheduleRequest, request: Request, user: CurrentUser, accounts: AccountsDep, config: ConfigDep
) -> Any:
    scheduler = _local(request)
    try:
        ScheduleSpec(
            cron=body.cron, time_zone=body.time_zone, start_date=body.start_date, catch_up=body.catch_up
        )
    except ValidationError as e:
        raise HTTPException(422, "; ".join(err["msg"] for err in e.errors())) from e
    model = body.model or config.default_model
    if model is None or not await model_exists(request, model):
        raise HTTPException(404, f"no model {model!r}")
    if body.webhook_url:
        await check_webhook_url(body.webhook_url, config)
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
    await Schedules(accounts.redis).save(record)
    scheduler.add(record)
    return record.public(_now())


@router.get("/schedules", response_model=list[ScheduleInfo], summary="My schedules")
async def list_schedules(user: CurrentUser, accounts: AccountsDep) -> Any:
    now = _now()
    return [s.public(now) for s in await Schedules(accounts.redis).of(user.username)]


@router.get("/schedules/{name}", response_model=ScheduleInfo, summary="A schedule")
async def get_schedule(name: str, user: CurrentUser, accounts: AccountsDep) -> Any:
    return (await _mine(name, user, Schedules(accounts.redis))).public(_now())


async def _set_paused(name: str, user: User, accounts: Any, paused: bool) -> dict[str, Any]:
    schedules = Schedules(accounts.redis)
    record = await _mine(name, user, schedules)
    record.paused, record.reason = paused, "paused by its owner" if paused else ""
    await schedules.save(record)
    return record.public(_now())


@router.post("/schedules/{name}/pause", response_model=ScheduleInfo, summary="Pause a schedule")
async def pause(name: str, user: CurrentUser, accounts: AccountsDep) -> Any:
    return await _set_paused(name, user, accounts, True)


@router.post("/schedules/{name}/resume", response_model=ScheduleInfo, summary="Resume a schedule")
async def resume(name: str, user: CurrentUser, accounts: AccountsDep) -> Any:
    return await _set_paused(name, user, accounts, False)


@router.post(
    "/schedules/{name}/run",
    status_code=201,
    response_model=BatchInfo,
    summary="Run the schedule for one date now",
)
async def run_now(
    name: str,
    request: Request,
    user: CurrentUser,
    accounts: AccountsDep,
    date: Annotated[dt.date, Body(embed=True, description="The date to process.")],
) -> Any:
    _local(request)
    schedules = Schedules(accounts.redis)
    record = await _mine(name, user, schedules)
    started = await run_date(request.app.state, record, date)
    if started is None:
        record = await schedules.get(name) or record
        if record.paused:
            raise HTTPException(402, record.reason)
        raise HTTPException(422, f"the manifest lists no images for {date}")
    return started.public()


@router.get(
    "/schedules/{name}/results.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "Every finished run's rows."}},
    summary="All results of a schedule as one CSV, oldest run first",
)
async def schedule_results(name: str, request: Request, user: CurrentUser, accounts: AccountsDep) -> Any:
    schedules, batches = Schedules(accounts.redis), Batches(accounts.redis)
    record = await _mine(name, user, schedules)
    runs = [b for b in [await batches.get(n) for n in await schedules.runs(record.name)] if b]
    outputs = [b.output_uri for b in runs if b.state in ("Succeeded", "Failed")]
    store: ObjectStore = request.app.state.store

    async def chunks() -> Any:
        header_sent = False
        for uri in outputs:
            with contextlib.suppress(ObjectNotFound):
                text = await asyncio.to_thread(store.read, uri)
                header, _, rows = text.partition(b"\n")
                if not header_sent:
                    yield header + b"\n"
                    header_sent = True
                yield rows

    headers = {"Content-Disposition": f'attachment; filename="{record.name}.csv"'}
    return StreamingResponse(chunks(), media_type="text/csv", headers=headers)
