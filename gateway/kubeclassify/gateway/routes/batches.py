"""CSV batches over REST: create from an uploaded CSV, list mine, status, results (JSON pages or the
CSV streamed), and the per-user webhook secret that signs batch notifications."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import json
import logging
import time
from typing import IO, Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile
from fastapi.responses import StreamingResponse

from kubeclassify.core.resources.classification_batch import ENDED_PHASES, BatchCounts, run_id
from kubeclassify.core.sources import OUTPUT_COLUMNS, InputError
from kubeclassify.core.storage import ObjectNotFound, ObjectStore, StorageError
from kubeclassify.gateway.batches import (
    BatchRecord,
    finish,
    new_name,
    paths,
)
from kubeclassify.gateway.catalog import model_exists
from kubeclassify.gateway.deps import (
    BatchBackendDep,
    BatchesDep,
    CatalogDep,
    ConfigDep,
    CurrentUser,
    LedgerDep,
    StoreDep,
    owned,
)
from kubeclassify.gateway.errors import SIGNED_IN, problems
from kubeclassify.gateway.inputs import check_webhook_url, count_for_date, read_csv
from kubeclassify.gateway.results import rows_csv, with_label
from kubeclassify.gateway.schemas import BatchInfo, BatchPage, LabelFilter, ResultPage, WebhookSecret

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["batches"], responses=SIGNED_IN)


def typed_row(row: dict[str, str]) -> dict[str, Any]:
    """A results CSV row as a ResultRow: numbers as numbers, the top k as a list, empty as none."""
    return {
        "id": int(row["id"]),
        "source": row["source"],
        "date": row.get("date") or None,
        "label": row.get("label") or None,
        "score": float(row["score"]) if row.get("score") else None,
        "top_k": json.loads(row["top_k"]) if row.get("top_k") else [],
        "model_name": row.get("model_name", ""),
        "model_version": row.get("model_version", ""),
        "error": row.get("error") or None,
        "time": row.get("time") or None,
        "extra": {k: v for k, v in row.items() if k not in OUTPUT_COLUMNS},
    }


@router.post(
    "/batches",
    status_code=201,
    response_model=BatchInfo,
    summary="Start a batch from a CSV of image URLs (url) or paths under your images (path)",
    responses=problems(402, 404, 409, 413),
)
async def create_batch(
    user: CurrentUser,
    config: ConfigDep,
    store: StoreDep,
    catalog: CatalogDep,
    batches: BatchesDep,
    ledger: LedgerDep,
    backend: BatchBackendDep,
    file: Annotated[
        UploadFile | None, File(description="A CSV with a url or a path column, one image a row.")
    ] = None,
    date: Annotated[
        dt.date | None, Form(description="Or a date: that day's images in the configured manifest.")
    ] = None,
    model: Annotated[str | None, Form(max_length=63, description="A model (default: the default).")] = None,
    webhook_url: Annotated[
        str | None, Form(max_length=2048, description="POSTed a signed JSON summary when the batch ends.")
    ] = None,
    max_failed_fraction: Annotated[
        float | None,
        Form(
            ge=0,
            le=1,
            description="The share of images that may fail (unreadable, missing, refused) before the batch"
            " fails (default: the gateway's MAX_FAILED_FRACTION); the results list every error either way.",
        ),
    ] = None,
) -> Any:
    """Start a batch from a CSV (a `url` column of image URLs, or a `path` column of my images'
    `path`s) or from a `date` of the configured daily manifest. The images are counted and paid for
    now; what is not classified is given back when the batch ends. It fails when more than
    `max_failed_fraction` of its images fail; its results list every error either way."""
    if (file is None) == (date is None):
        raise HTTPException(422, "send exactly one of file and date")
    name_of_model = model or config.default_model
    if name_of_model is None or not await model_exists(catalog, name_of_model):
        raise HTTPException(404, f"no model {name_of_model!r}")
    checked = await read_csv(file, config) if file is not None else None
    if date is not None:
        if config.manifest is None:
            raise HTTPException(409, "no manifest is configured here: send a CSV instead")
        try:
            count = await asyncio.to_thread(count_for_date, config.manifest, date, store)
        except (InputError, StorageError) as e:
            raise HTTPException(503, f"the manifest cannot be read: {e}") from e
        if count == 0:
            raise HTTPException(422, f"the manifest lists no images for {date}")
    else:
        assert checked is not None
        count = checked.rows
    if webhook_url:
        await check_webhook_url(webhook_url, config)
        if await batches.webhook_secret(user.username) is None:
            raise HTTPException(409, "make a webhook secret first: POST /v1/webhook-secret")
    cost = count * config.image_cost
    name = new_name(user.username)
    run = run_id(name, date)
    if not (await ledger.reserve(run, user.username, count, config.image_cost, time.time())).admitted:
        raise HTTPException(402, f"not enough credits: {count} images cost {cost}")
    where = paths(config.batches_uri, user.username, name)
    if checked is not None:
        try:
            await asyncio.to_thread(store.write, where["input"], checked.data, "text/csv")
        except StorageError as e:
            await ledger.settle(run, user.username, 0)  # nothing ran: every credit back
            raise HTTPException(503, "the CSV could not be stored; try again") from e
    record = BatchRecord(
        name=name,
        owner=user.username,
        model=name_of_model,
        column=checked.column if checked is not None else "manifest",
        input_uri=where["input"] if checked is not None else "",
        output_uri=where["output"],
        counts=BatchCounts(total=count),
        reserved=cost,
        webhook_url=webhook_url or None,
        date=date.isoformat() if date is not None else None,
        max_failed_fraction=max_failed_fraction,
        run=run,
    )
    await batches.add(record)
    try:
        await backend.submit(name)
    except Exception as e:  # the Kubernetes API refused or is away: nothing runs, nothing is paid
        log.warning("a batch could not be started", extra={"batch": name, "error": str(e)})
        await finish(
            batches, config, record, "Failed", f"could not be started: {type(e).__name__}", BatchCounts()
        )
        raise HTTPException(503, "the batch could not be started; try again") from e
    return record.public()


@router.get("/batches", response_model=BatchPage, summary="My batches, newest first")
async def list_batches(
    user: CurrentUser,
    batches: BatchesDep,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Any:
    """My batches, newest first, paged."""
    records, total = await batches.of(user.username, offset, limit)
    return {"items": [r.public() for r in records], "total": total, "offset": offset, "limit": limit}


@router.get(
    "/batches/{name}", response_model=BatchInfo, summary="A batch's state and counts", responses=problems(404)
)
async def get_batch(name: str, user: CurrentUser, batches: BatchesDep) -> Any:
    """A batch's state (Pending, Running, Succeeded, Failed), message, counts and times."""
    return owned(await batches.get(name), user, f"batch {name!r}").public()


async def _results(store: ObjectStore, record: BatchRecord, binary: bool = False) -> IO[Any]:
    """The batch's results, open for reading: 409 while it runs, 404 when it published none."""
    if record.state not in ENDED_PHASES:
        raise HTTPException(409, f"batch {record.name} is {record.state}: results come when it ends")
    if record.cancelled:  # what its worker may have written before it was stopped is not served
        raise HTTPException(404, f"batch {record.name} was cancelled: it has no results")
    try:
        opened: IO[Any] = await asyncio.to_thread(
            store.open if binary else store.open_text, record.output_uri
        )
    except ObjectNotFound as e:
        raise HTTPException(404, f"batch {record.name} has no results: {record.message}") from e
    return opened


@router.get(
    "/batches/{name}/results",
    response_model=ResultPage,
    summary="Result rows as JSON, paged",
    responses=problems(404, 409),
)
async def result_rows(
    name: str,
    user: CurrentUser,
    batches: BatchesDep,
    store: StoreDep,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    label: LabelFilter = None,
) -> Any:
    """A finished batch's result rows, typed, paged: one row per input image, with its label, score,
    top k, or its error; the input's other columns under `extra`. With `label`, only the rows with
    that top label (offset and limit count those)."""
    record = owned(await batches.get(name), user, f"batch {name!r}")
    text = await _results(store, record)
    keep = with_label(label)

    def page() -> tuple[list[dict[str, str]], bool]:
        with contextlib.closing(text):
            rows, more = [], False
            kept = (row for row in csv.DictReader(text) if keep is None or keep(row))
            for i, row in enumerate(kept):
                if i >= offset + limit:
                    more = True
                    break
                if i >= offset:
                    rows.append(typed_row(row))
            return rows, more

    rows, more = await asyncio.to_thread(page)
    return {"rows": rows, "offset": offset, "limit": limit, "more": more}


@router.get(
    "/batches/{name}/results.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "The results CSV."}, **problems(404, 409)},
    summary="The results CSV, streamed",
)
async def result_csv(
    name: str, user: CurrentUser, batches: BatchesDep, store: StoreDep, label: LabelFilter = None
) -> Any:
    """A finished batch's results as the CSV the worker wrote, streamed; with `label`, only the
    rows with that top label, under the same header."""
    record = owned(await batches.get(name), user, f"batch {name!r}")
    headers = {"Content-Disposition": f'attachment; filename="{record.name}.csv"'}
    if label is not None:
        text = await _results(store, record)
        return StreamingResponse(rows_csv([text], with_label(label)), media_type="text/csv", headers=headers)
    stream = await _results(store, record, binary=True)

    async def chunks() -> Any:
        with contextlib.closing(stream):
            while chunk := await asyncio.to_thread(stream.read, 1 << 16):
                yield chunk

    return StreamingResponse(chunks(), media_type="text/csv", headers=headers)


@router.post(
    "/batches/{name}/cancel",
    response_model=BatchInfo,
    summary="Cancel a batch that has not ended",
    responses=problems(404, 409),
)
async def cancel_batch(name: str, user: CurrentUser, batches: BatchesDep, backend: BatchBackendDep) -> Any:
    """Stop a batch that has not ended: its worker or Job is stopped and it ends as Failed,
    'cancelled by its owner', with no results. It is charged for the images classified before it
    stopped, as its run last reported them; the rest of its credits are given back. A batch that
    ended first is 409."""
    record = owned(await batches.get(name), user, f"batch {name!r}")
    if record.state not in ENDED_PHASES:
        await backend.cancel(name)
        record = owned(await batches.get(name), user, f"batch {name!r}")
        if record.cancelled:
            return record.public()
    raise HTTPException(409, f"batch {name} has ended ({record.state}): there is nothing to cancel")


@router.delete(
    "/batches/{name}",
    status_code=204,
    summary="Delete an ended batch: its record, its CSV and its results",
    responses=problems(404, 409),
)
async def delete_batch(
    name: str,
    user: CurrentUser,
    config: ConfigDep,
    batches: BatchesDep,
    store: StoreDep,
    backend: BatchBackendDep,
) -> None:
    """Delete a batch that has ended (cancel one that runs first): its record, the CSV it was
    started from and its results. Its charges stay in the ledger."""
    record = owned(await batches.get(name), user, f"batch {name!r}")
    if record.state not in ENDED_PHASES:
        raise HTTPException(409, f"batch {name} is {record.state}: cancel it first")
    await backend.forget(name)
    folder = paths(config.batches_uri, record.owner, record.name)["folder"]
    try:
        await asyncio.to_thread(_delete_under, store, folder)
    except StorageError as e:
        raise HTTPException(503, "the batch's files could not be deleted; try again") from e
    await batches.remove(record)


def _delete_under(store: ObjectStore, folder: str) -> None:
    for found in list(store.iter_objects(folder)):
        with contextlib.suppress(ObjectNotFound):
            store.delete(found.uri)


@router.post(
    "/webhook-secret",
    response_model=WebhookSecret,
    summary="Make (or replace) my webhook signing secret",
    responses=problems(413),
)
async def rotate_webhook_secret(user: CurrentUser, batches: BatchesDep) -> Any:
    """Make (or replace) my webhook signing secret, shown in this answer only. Batch and schedule
    notifications carry `X-KubeClassify-Signature: t=...,v1=HMAC-SHA256(secret, t.body)`."""
    return {"secret": await batches.rotate_webhook_secret(user.username)}
