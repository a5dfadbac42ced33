"""Batch webhooks, delivered from a queue of their own, off the settlement path.

When a batch ends, `finish` settles it and queues its webhook on the Redis stream `kc:webhooks`,
once (`Batches.announce`). Every gateway replica reads the stream in one consumer group, so each
webhook goes to one of them, which posts it on a pool of `WEBHOOK_WORKERS` threads of its own
(signed, retried with backoff by `core.webhooks.deliver`, the batch's name as the delivery id),
records the outcome on the batch, and only then acknowledges it. A webhook a replica took and never
acknowledged (it stopped mid-delivery) is taken over by another after `REDELIVER_SECONDS`: the
receiver may then see it twice, with the same `X-KubeClassify-Delivery`, and drops the second.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import os
import secrets
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from redis.exceptions import RedisError, ResponseError

from kubeclassify.core.fetch import FetchPolicy
from kubeclassify.core.webhooks import deliver
from kubeclassify.gateway.batches import WEBHOOKS, Batches, BatchRecord
from kubeclassify.gateway.cancel import cancelling, stop_if_cancelled, stop_tasks

log = logging.getLogger(__name__)

GROUP = "deliverers"
# How long one read waits for a webhook: well under the Redis client's socket timeout (redis-py's
# default is 5 s), or the wait itself would time out and be retried as a failure.
BLOCK_MS = 1000
REDELIVER_SECONDS = 300  # longer than one delivery's five tries can take (5 x 10 s + 15 s of waits)


def payload(record: BatchRecord) -> dict[str, Any]:
    """What a batch's webhook says."""
    return {
        "batch": record.name,
        "state": record.state,
        "message": record.message,
        "counts": record.public()["counts"],
        "results": f"/v1/batches/{record.name}/results.csv",
        "finished": dt.datetime.fromtimestamp(record.finished or time.time(), dt.UTC).isoformat(),
    }


class Webhooks:
    """This replica's consumer of the webhook stream."""

    def __init__(self, redis: Any, config: Any, redeliver_seconds: float = REDELIVER_SECONDS) -> None:
        self.redis = redis
        self.batches = Batches(redis)
        self.policy = FetchPolicy.allowing(*config.fetch_allowed_networks, timeout=10.0)
        self.workers = config.webhook_workers
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="webhook")
        self.free = asyncio.Semaphore(self.workers)
        self.redeliver_ms = int(redeliver_seconds * 1000)
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.task: asyncio.Task[None] | None = None
        self.sending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        try:
            await self.redis.xgroup_create(WEBHOOKS, GROUP, id="0", mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        if self.task is None:
            self.task = asyncio.create_task(self._consume())

    async def stop(self) -> None:
        """Stop taking webhooks; those being sent are dropped unacknowledged, for another replica."""
        await stop_tasks([self.task, *self.sending])
        self.pool.shutdown(wait=False, cancel_futures=True)
        try:  # a consumer with nothing pending leaves the group (with pending ones, they would go too)
            if not await self.redis.xpending_range(WEBHOOKS, GROUP, "-", "+", 1, consumername=self.consumer):
                await self.redis.xgroup_delconsumer(WEBHOOKS, GROUP, self.consumer)
        except RedisError:
            pass

    async def _consume(self) -> None:
        next_claim = 0.0
        while not cancelling():
            try:
                entries: list[tuple[str, dict[str, str]]] = []
                if time.monotonic() >= next_claim:  # a replica that stopped mid-delivery left these
                    claimed = await self.redis.xautoclaim(
                        WEBHOOKS, GROUP, self.consumer, self.redeliver_ms, "0-0", count=self.workers
                    )
                    entries += claimed[1]
                    next_claim = time.monotonic() + self.redeliver_ms / 10_000
                if not entries:
                    read = await self.redis.xreadgroup(
                        GROUP,
                        self.consumer,
                        {WEBHOOKS: ">"},
                        count=self.workers,
                        block=min(BLOCK_MS, self.redeliver_ms),
                    )
                    entries = [entry for _, stream in read or [] for entry in stream]
                for entry_id, fields in entries:
                    await self.free.acquire()  # taken in turn as workers come free
                    task = asyncio.create_task(self._send(entry_id, fields.get("batch", "")))
                    self.sending.add(task)
                    task.add_done_callback(self.sending.discard)
            except asyncio.CancelledError:
                raise
            except RedisError as e:
                stop_if_cancelled(e)
                log.warning("webhooks cannot be read from Redis; retrying", extra={"error": str(e)})
                await asyncio.sleep(5)
        raise asyncio.CancelledError

    async def _send(self, entry_id: str, name: str) -> None:
        try:
            record = await self.batches.get(name)
            if record is not None and record.webhook_url:
                secret = await self.batches.webhook_secret(record.owner)
                delivered = False
                if secret is not None:
                    send = functools.partial(
                        deliver,
                        record.webhook_url,
                        payload(record),
                        secret.encode(),
                        policy=self.policy,
                        delivery=record.name,
                    )
                    result = await asyncio.get_running_loop().run_in_executor(self.pool, send)
                    delivered = result.delivered
                    if not delivered:
                        log.warning("webhook not delivered", extra={"batch": name, "error": result.error})
                record.webhook_delivered = delivered
                await self.batches.update(record)
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xack(WEBHOOKS, GROUP, entry_id)
                pipe.xdel(WEBHOOKS, entry_id)
                await pipe.execute()
        except RedisError as e:  # unacknowledged: sent again after REDELIVER_SECONDS
            log.warning("a webhook's outcome could not be recorded", extra={"batch": name, "error": str(e)})
        finally:
            self.free.release()
