"""CSV batches: checking an uploaded CSV, the batch records in Redis, and settling their credits.

A batch is named `<owner>-<short id>` (the name of its ClassificationBatch on Kubernetes). Its CSV
lists image URLs (column `url`) or paths under the owner's own images (column `path`, relative to
`<images_uri>/<owner>/`), or a date names the images of that day in the configured manifest. The
images are counted and their credits reserved when the batch is created (its first run is
admitted then, for that many images); when it finishes, the images classified are charged and the
rest given back, once, in the ledger (`kubeclassify.gateway.ledger`), however many gateway
replicas see the end.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from kubeclassify.core import constants as c
from kubeclassify.core.resources.classification_batch import (
    ENDED_PHASES,
    Admission,
    BatchCounts,
    ClassificationBatchSpec,
    ManifestInput,
)
from kubeclassify.core.sources import InputError, items, owner_source, read_table
from kubeclassify.core.storage import join
from kubeclassify.gateway.ledger import Ledger

COLUMNS = ("url", "path")
ACTIVE = "kc:batches:active"

WEBHOOKS = "kc:webhooks"  # the stream of webhooks to deliver (kubeclassify.gateway.webhooks)
# Announce once: the first caller claims the batch's webhook and queues it, atomically.
_ANNOUNCE = """
if redis.call('SET', KEYS[1], '1', 'NX') then
  redis.call('XADD', KEYS[2], '*', 'batch', ARGV[1])
  return 1
end
return 0
"""


class CsvError(ValueError):
    """The CSV cannot start a batch; the message says why, naming the row or column."""


@dataclass(frozen=True)
class CheckedCsv:
    column: str  # url or path
    rows: int
    data: bytes  # the CSV to store: header and rows as they came


def check_csv(data: bytes, max_rows: int) -> CheckedCsv:
    """Check an uploaded batch CSV before anything starts: text, one known column, rows, no formulas.

    It is read by `core`'s reader, the one the batch worker reads it with, and each image is
    resolved as the worker resolves it (`owner_source`), so what passes here is what is read there.
    """
    if b"\x00" in data:
        raise CsvError("this is not a CSV: it has binary content")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CsvError(f"this is not a UTF-8 CSV (byte {e.start})") from e
    try:
        table = read_table(io.StringIO(text, newline=""), "the CSV")
    except InputError as e:
        if "is empty" in str(e):
            raise CsvError(
                f"the CSV needs exactly one of the columns {' or '.join(COLUMNS)}; it has none"
            ) from e
        raise CsvError(str(e)) from e
    found = [c for c in COLUMNS if c in table.columns]
    if len(found) != 1:
        raise CsvError(
            f"the CSV needs exactly one of the columns {' or '.join(COLUMNS)};"
            f" it has {', '.join(table.columns) or 'none'}"
        )
    column = found[0]
    rows = 0
    for line, row in table.rows:
        if not any(cell.strip() for cell in row.values()):
            continue
        rows += 1
        if rows > max_rows:
            raise CsvError(f"the CSV has more than {max_rows} rows; split it")
        for name, cell in row.items():
            if cell.startswith(c.FORMULA_START):
                raise CsvError(f"row {line}, column {name!r} starts with {cell[0]!r}: formulas are refused")
        value = row[column].strip()
        if not value:
            raise CsvError(f"row {line} has no {column}")
        is_url = value.startswith(("http://", "https://"))
        if column == "url" and not is_url:
            raise CsvError(f"row {line}: {value[:80]!r} is not an http(s) URL")
        if column == "path" and is_url:
            raise CsvError(f"row {line}: {value[:80]!r} is outside your images; give paths relative to them")
        try:
            owner_source("s3://owner/", value)
        except InputError as e:
            raise CsvError(f"row {line}: {e}") from e
    if rows == 0:
        raise CsvError("the CSV has a header but no rows")
    return CheckedCsv(column, rows, data)


@dataclass
class BatchRecord:
    name: str
    owner: str
    model: str
    column: str  # what the input lists: url, path, or manifest (the configured one, for `date`)
    input_uri: str
    output_uri: str
    counts: BatchCounts  # total: the images listed (and reserved for) at creation; the rest when it ends
    reserved: int  # credits taken at creation
    created: float = field(default_factory=time.time)
    state: str = "Pending"
    message: str = ""
    finished: float | None = None
    webhook_url: str | None = None
    webhook_delivered: bool | None = None
    date: str | None = None
    max_failed_fraction: float | None = None  # None: the gateway's MAX_FAILED_FRACTION
    schedule: str | None = None  # the schedule whose run this is (local backend)
    manual: bool = False  # a schedule's run asked for by its owner, not fired by its cron
    run: str = ""  # the id its first run's credits are reserved under in the ledger ("" : the name)

    @property
    def run_id(self) -> str:
        return self.run or self.name

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "counts": self.counts.model_dump()})

    @classmethod
    def from_json(cls, raw: str) -> BatchRecord:
        fields = json.loads(raw)
        if "counts" not in fields:  # written before counts were one object: total, classified, ... at the top
            fields["counts"] = {k: fields.pop(k, 0) for k in ("total", "classified", "failed", "skipped")}
        return cls(**{**fields, "counts": BatchCounts.read(fields["counts"])})

    def public(self) -> dict[str, Any]:
        out = {**asdict(self), "counts": self.counts.model_dump()}
        for private in (
            "input_uri",
            "output_uri",
            "column",
            "webhook_url",
            "max_failed_fraction",
            "manual",
            "run",
        ):
            del out[private]
        out["input"] = self.column
        return out


def new_name(owner: str) -> str:
    return f"{owner}-{secrets.token_hex(4)}"


def paths(batches_uri: str, owner: str, name: str) -> dict[str, str]:
    """Where a batch's CSV and results live."""
    folder = join(batches_uri, owner, name)
    return {
        "input": join(folder, "input.csv"),
        "output": join(folder, "results.csv"),
    }


class Batches:
    """Batch records on the accounts' Redis: a hash per batch, a per-owner index, the active set."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis

    async def add(self, record: BatchRecord) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(f"kc:batch:{record.name}", mapping={"json": record.to_json()})
            pipe.zadd(f"kc:batches:{record.owner}", {record.name: record.created})
            pipe.sadd(ACTIVE, record.name)
            await pipe.execute()

    async def get(self, name: str) -> BatchRecord | None:
        raw = await self.redis.hget(f"kc:batch:{name}", "json")
        return BatchRecord.from_json(raw) if raw else None

    async def update(self, record: BatchRecord) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(f"kc:batch:{record.name}", mapping={"json": record.to_json()})
            if record.state in ENDED_PHASES:
                pipe.srem(ACTIVE, record.name)
            await pipe.execute()

    async def of(self, owner: str, offset: int, limit: int) -> tuple[list[BatchRecord], int]:
        key = f"kc:batches:{owner}"
        names = await self.redis.zrevrange(key, offset, offset + limit - 1)
        records = [r for r in [await self.get(n) for n in names] if r is not None]
        return records, int(await self.redis.zcard(key))

    async def active(self) -> list[str]:
        return sorted(await self.redis.smembers(ACTIVE))

    async def announce(self, record: BatchRecord) -> bool:
        """Queue the batch's webhook, once; True for the call that did."""
        keys = (f"kc:webhook-claimed:{record.name}", WEBHOOKS)
        return bool(await self.redis.eval(_ANNOUNCE, 2, *keys, record.name))

    async def webhook_secret(self, owner: str) -> str | None:
        secret: str | None = await self.redis.get(f"kc:webhook-secret:{owner}")
        return secret

    async def rotate_webhook_secret(self, owner: str) -> str:
        secret = "whsec_" + secrets.token_urlsafe(32)
        await self.redis.set(f"kc:webhook-secret:{owner}", secret)
        return secret


async def finish(
    batches: Batches, config: Any, record: BatchRecord, state: str, message: str, counts: BatchCounts
) -> None:
    """Record how a batch ended, give back what was not used, and queue its webhook: each once,
    however many gateways see the end (settlement and the webhook are claimed in Redis). The
    webhook is delivered from its queue (`kubeclassify.gateway.webhooks`), never here: a slow
    receiver holds up no one's settlement."""
    record.counts = counts.model_copy(update={"total": record.counts.total})  # the total it was paid for
    record.state, record.message = state, message[:1000]
    record.finished = record.finished or time.time()
    await batches.update(record)
    await Ledger(batches.redis).settle(record.run_id, record.owner, record.counts.classified)
    if record.webhook_url:
        await batches.announce(record)


def spec_of(record: BatchRecord, config: Any) -> dict[str, Any]:
    """The ClassificationBatch spec of a gateway batch (the same for both backends)."""
    if record.column == "url":
        source: dict[str, Any] = {"urls": {"uri": record.input_uri, "column": "url"}}
    elif record.column == "manifest":
        source = {"manifest": config.manifest.to_k8s()}
    else:  # paths under the owner's images (core's owner_prefix): the worker resolves each one
        source = {"urls": {"uri": record.input_uri, "column": "path"}}
    return {
        "modelRef": {"name": record.model},
        "input": source,
        **({"date": record.date} if record.date else {}),
        "output": {"uri": record.output_uri, "format": "csv"},
        "mode": "remote",
        "maxFailedFraction": failed_fraction_allowed(record, config),
    }


def failed_fraction_allowed(record: BatchRecord, config: Any) -> float:
    """The share of the batch's images that may fail before it fails."""
    limit = record.max_failed_fraction
    return float(config.max_failed_fraction if limit is None else limit)


def too_many_failed(counts: BatchCounts, limit: float) -> str:
    """Why a batch failed when more of its images failed than it allows."""
    failed, total = counts.failed, counts.total
    share = f" ({failed / total:.0%})" if total else ""
    return (
        f"{failed} of {total} images failed{share}, more than the {limit:.0%} this batch allows"
        " (max_failed_fraction); each error is a row of the results"
    )


def batch_resource(record: BatchRecord, config: Any) -> dict[str, Any]:
    """The ClassificationBatch the kubernetes backend creates for a gateway batch: its first run
    admitted already, for the images reserved at creation."""
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.CLASSIFICATION_BATCH,
        "metadata": {
            "name": record.name,
            "namespace": config.namespace,
            "labels": {c.LABEL_OWNER: record.owner, c.LABEL_MANAGED_BY: c.MANAGED_BY_GATEWAY},
            "annotations": Admission(run=record.run_id, images=record.counts.total).annotation(),
        },
        "spec": spec_of(record, config),
    }


def count_for_date(manifest: ManifestInput, date: dt.date, store: Any) -> int:
    """How many images the configured manifest lists for `date` (streamed; InputError names a bad one)."""
    spec = ClassificationBatchSpec.model_validate(
        {
            "modelRef": {"name": "count"},
            "input": {"manifest": manifest.to_k8s()},
            "date": date.isoformat(),
            "output": {"uri": "file:///dev/null"},
        }
    )
    return sum(1 for _ in items(spec, store, date))


def schedule_resource(schedule: Any, config: Any) -> dict[str, Any]:
    """The scheduled ClassificationBatch the kubernetes backend creates for a gateway schedule; each
    run writes `<batches_uri>/<owner>/<name>/<date>/results.csv`."""
    spec: dict[str, Any] = {
        "modelRef": {"name": schedule.model},
        "input": {"manifest": config.manifest.to_k8s()},
        "schedule": {
            "cron": schedule.cron,
            "timeZone": schedule.time_zone,
            "catchUp": schedule.catch_up,
            "suspend": schedule.paused,
            **({"startDate": schedule.start_date} if schedule.start_date else {}),
        },
        "output": {"uri": join(config.batches_uri, schedule.owner, schedule.name) + "/{date}/results.csv"},
        "mode": "remote",
        "maxFailedFraction": config.max_failed_fraction,
    }
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.CLASSIFICATION_BATCH,
        "metadata": {
            "name": schedule.name,
            "namespace": config.namespace,
            "labels": {c.LABEL_OWNER: schedule.owner, c.LABEL_MANAGED_BY: c.MANAGED_BY_GATEWAY},
        },
        "spec": spec,
    }
