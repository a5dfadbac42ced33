"""Batches: their records in Redis, and settling their credits (`inputs` checks what starts one,
`resources` builds its ClassificationBatch).

A batch is named `<owner>-<short id>` (the name of its ClassificationBatch on Kubernetes). Its CSV
lists image URLs (column `url`) or paths under the owner's own images (column `path`, relative to
`<images_uri>/<owner>/`), or a date names the images of that day in the configured manifest. The
images are counted and their credits reserved when the batch is created (its first run is
admitted then, for that many images); when it finishes, the images classified are charged and the
rest given back, once, in the ledger (`kubeclassify.gateway.ledger`), however many gateway
replicas see the end.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from redis.exceptions import WatchError

from kubeclassify.core.resources.classification_batch import (
    ENDED_PHASES,
    BatchCounts,
)
from kubeclassify.core.storage import join
from kubeclassify.gateway.ledger import Ledger

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
    images_per_second: float | None = None  # while it runs, as its run last reported
    estimated_completion_time: float | None = None  # while it runs: when it should end at that speed

    @property
    def run_id(self) -> str:
        return self.run or self.name

    @property
    def cancelled(self) -> bool:
        return self.state == "Failed" and self.message == CANCELLED

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
    """Where a batch's files live: its folder, and in it its CSV and its results."""
    folder = join(batches_uri, owner, name)
    return {
        "folder": folder + "/",
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

    async def change_running(self, name: str, edit: Callable[[BatchRecord], bool]) -> None:
        """Apply `edit` to the stored record while the batch has not ended, as one transaction: an
        end recorded meanwhile is never written over (`edit` answers whether it changed anything)."""
        key = f"kc:batch:{name}"
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.hget(key, "json")
                    record = BatchRecord.from_json(raw) if raw else None
                    if record is None or record.state in ENDED_PHASES or not edit(record):
                        return
                    pipe.multi()
                    pipe.hset(key, mapping={"json": record.to_json()})
                    await pipe.execute()
                    return
                except WatchError:
                    continue

    async def remove(self, record: BatchRecord) -> None:
        """Forget the batch: its record, its place in its owner's list, its webhook's claim."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(f"kc:batch:{record.name}", f"kc:webhook-claimed:{record.name}")
            pipe.zrem(f"kc:batches:{record.owner}", record.name)
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
    record.images_per_second = record.estimated_completion_time = None
    await batches.update(record)
    await Ledger(batches.redis).settle(record.run_id, record.owner, record.counts.classified)
    if record.webhook_url:
        await batches.announce(record)


def progressed(record: BatchRecord, counts: BatchCounts, images_per_second: float | None, now: float) -> bool:
    """Bring a running batch's record in step with what its run reports: the images done so far
    (its total stays the images it was paid for), the speed, and when it should end at that speed.
    Whether anything changed."""
    counts = counts.model_copy(update={"total": record.counts.total})
    done = counts.classified + counts.failed
    rate = images_per_second if images_per_second and images_per_second > 0 else None
    eta = round(now + max(counts.total - done, 0) / rate) if rate is not None else None
    if (counts, rate, eta) == (record.counts, record.images_per_second, record.estimated_completion_time):
        return False
    record.counts, record.images_per_second, record.estimated_completion_time = counts, rate, eta
    return True


CANCELLED = "cancelled by its owner"


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
