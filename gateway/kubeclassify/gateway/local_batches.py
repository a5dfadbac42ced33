"""The `local` batch backend: the batch worker as local processes, at most `local_batch_concurrency`
at a time, calling the model's predictor (mode remote). Batch state lives in Redis, so a restarted
gateway picks up the batches that had not finished (the worker skips what was already published).
One gateway replica only: a lease in Redis (redis-py's Lock: taken, renewed and given back only by
its holder's token) refuses a second one, and a replica that finds its lease taken over stops
running batches, which the new holder picks up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from redis.exceptions import LockError, LockNotOwnedError, RedisError

from kubeclassify.core.progress import last_progress
from kubeclassify.core.resources.classification_batch import ENDED_PHASES, BatchCounts
from kubeclassify.core.settings import S3Settings
from kubeclassify.core.sources import owner_prefix
from kubeclassify.gateway.backends import Platform
from kubeclassify.gateway.batches import (
    CANCELLED,
    Batches,
    BatchRecord,
    failed_fraction_allowed,
    finish,
    progressed,
    too_many_failed,
)
from kubeclassify.gateway.cancel import stop_tasks
from kubeclassify.gateway.resources import spec_of
from kubeclassify.gateway.schedules import run_ended

log = logging.getLogger(__name__)

# What the worker may inherit from the gateway's environment: how to run Python and reach S3, never
# the gateway's own settings (its token secret, admin password and Redis URL stay with it).
INHERITED = ("PATH", "HOME", "LANG", "TZ", "TMPDIR", "VIRTUAL_ENV", "SSL_CERT_FILE", "SSL_CERT_DIR")
INHERITED_PREFIXES = ("LC_", "PYTHON", "AWS_", "TF_", "OMP_")
PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")  # in either case
SETTINGS = ("KUBECLASSIFY_ENVIRONMENT", "KUBECLASSIFY_LOG_LEVEL")  # the worker's own

LEASE = "kc:local-batches:lease"
LEASE_SECONDS = 30
LOG_LINE_BYTES = 1 << 20  # the longest worker log line passed on (a traceback is one JSON line)
PROGRESS_SECONDS = 1.0  # how often a worker reports its progress, written into its batch's record


def worker_env(environ: Mapping[str, str], s3: S3Settings) -> dict[str, str]:
    """The environment of a batch worker process, which decodes untrusted images: the basics of
    `environ` and the S3 settings, nothing else."""
    kept = {
        k: v
        for k, v in environ.items()
        if k in INHERITED or k in SETTINGS or k.startswith(INHERITED_PREFIXES) or k.upper() in PROXIES
    }
    return {**kept, **s3.to_env(), "KUBECLASSIFY_LOG_FORMAT": "json"}


class SecondReplica(RuntimeError):
    """Another gateway already runs the local batch backend."""


class LocalBatches:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.config = platform.config
        self.batches = Batches(platform.accounts.redis)
        self.slots = asyncio.Semaphore(self.config.local_batch_concurrency)
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.finishing: set[str] = set()
        self.holder = secrets.token_hex(8)
        self.folder = Path(tempfile.mkdtemp(prefix="kubeclassify-batches-"))
        self.lease = self.batches.redis.lock(LEASE, timeout=LEASE_SECONDS, thread_local=False)
        self.lease_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if not await self.lease.owned() and not await self.lease.acquire(blocking=False, token=self.holder):
            raise SecondReplica(
                "another gateway runs the local batch backend (one replica only); "
                f"stop it, or wait {LEASE_SECONDS}s after it stopped"
            )
        if self.lease_task is None:
            self.lease_task = asyncio.create_task(self._keep_lease())
        for name in await self.batches.active():
            await self.submit(name)  # what a previous gateway left unfinished

    async def stop(self) -> None:
        await stop_tasks([*self.tasks.values(), self.lease_task])
        if self.lease_task is not None:  # started: give the lease back for the next gateway
            with contextlib.suppress(LockError, RedisError):  # not ours any more, or Redis is away
                await self.lease.release()

    async def submit(self, name: str) -> None:
        if name not in self.tasks:
            self.tasks[name] = asyncio.create_task(self._run(name))
            self.tasks[name].add_done_callback(lambda _: self.tasks.pop(name, None))

    async def _keep_lease(self) -> None:
        """Renew the lease while it is ours; once another replica holds it, stop running batches."""
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            try:
                try:
                    await self.lease.reacquire()
                    continue
                except LockNotOwnedError:
                    if await self.lease.acquire(blocking=False, token=self.holder):
                        continue  # it had lapsed with no one holding it (Redis lost it): ours again
            except RedisError as e:  # Redis away for a moment (either call): try at the next renewal
                log.warning("the local batch lease could not be renewed", extra={"error": str(e)})
                continue
            log.error("another gateway took over the local batch backend; this one stops running batches")
            await stop_tasks(list(self.tasks.values()))
            return

    async def cancel(self, name: str) -> None:
        """Stop the batch's worker (or its wait for a slot) and end the batch as cancelled, charged
        for the images its worker reported done. A batch already finishing ends as it would."""
        task = self.tasks.get(name)
        if task is not None:
            if name not in self.finishing:
                task.cancel()
            await asyncio.wait([task])
        record = await self.batches.get(name)
        if record is not None and record.state not in ENDED_PHASES:
            await self._finish(record, {"error": CANCELLED, "counts": record.counts.model_dump()})

    async def forget(self, name: str) -> None:
        """Nothing is left of an ended batch here but its files, which are its owner's to delete."""

    async def _run(self, name: str) -> None:
        async with self.slots:
            record = await self.batches.get(name)
            if record is None or record.state in ENDED_PHASES:
                return
            record.state = "Running"
            await self.batches.update(record)
            try:
                summary = await self._worker(record)
            except asyncio.CancelledError:
                self.finishing.discard(name)
                raise  # the gateway stops (the batch stays active, resumed on restart) or it is cancelled
            except Exception as e:  # noqa: BLE001 - any failure ends this batch with its reason
                log.exception("batch failed", extra={"batch": name})
                summary = {"error": str(e)}
            self.finishing.add(name)  # from here a cancel waits for the end instead
            try:
                await self._finish(record, summary)
            finally:
                self.finishing.discard(name)

    async def _worker(self, record: BatchRecord) -> dict[str, Any]:
        """Run the batch worker for this batch and return its summary (or its error)."""
        base = await self.platform.catalog.resolve(record.model)
        if base is None:
            return {"error": f"no model {record.model!r}"}
        spec_file = self.folder / f"{record.name}.json"
        summary_file = self.folder / f"{record.name}.summary.json"
        spec_file.write_text(
            json.dumps({"metadata": {"name": record.name}, "spec": spec_of(record, self.config)})
        )
        argv = [
            sys.executable,
            "-m",
            "kubeclassify.inference.batch",
            "--batch",
            str(spec_file),
            "--predictor-url",
            base,
            "--termination-log",
            str(summary_file),
            "--progress-every",
            str(PROGRESS_SECONDS),
        ]
        if record.column == "url" or record.column == "path":  # the owner's CSV: their rows, their images
            argv += ["--owner-prefix", owner_prefix(self.config.images_uri, record.owner)]
        argv += ["--max-images", str(record.counts.total)]  # what was paid for (a day's images may grow)
        for network in self.config.fetch_allowed_networks:
            argv += ["--allow-network", network]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=worker_env(os.environ, self.platform.s3),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            limit=LOG_LINE_BYTES,
        )
        assert proc.stderr is not None
        progress = asyncio.create_task(self._follow_progress(record.name, proc.stderr))
        try:
            code = await proc.wait()
            self.finishing.add(record.name)  # it may have published: a cancel now waits for its end
            await progress  # its last lines, to the end of the stream
        except asyncio.CancelledError:
            progress.cancel()
            with contextlib.suppress(ProcessLookupError):
                proc.kill()  # nothing it does after this is published: its batch ends without it
            with contextlib.suppress(asyncio.CancelledError):
                await proc.wait()
            raise
        summary: dict[str, Any] = {}
        if summary_file.exists():
            with contextlib.suppress(ValueError):
                summary = json.loads(summary_file.read_text())
        if code not in (0, 3) and "error" not in summary:
            summary["error"] = f"the batch worker exited with code {code}"
        return summary

    async def _follow_progress(self, name: str, stream: asyncio.StreamReader) -> None:
        """Pass the worker's log on to the gateway's, and write each progress line it reports (one
        every PROGRESS_SECONDS) into the batch's record, unless the batch has ended meanwhile."""
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the stream's limit: dropped, the rest read on
                continue
            if not line:
                return
            sys.stderr.write(line.decode(errors="replace"))
            reported = last_progress(line.decode(errors="replace")) if b'"progress"' in line else None
            if reported is None:
                continue
            counts = BatchCounts(classified=reported.done - reported.failed, failed=reported.failed)
            edit = partial(
                progressed, counts=counts, images_per_second=reported.images_per_second, now=time.time()
            )
            with contextlib.suppress(RedisError):  # Redis away a moment: the next line says as much
                await self.batches.change_running(name, edit)

    async def _finish(self, record: BatchRecord, summary: dict[str, Any]) -> None:
        counts = BatchCounts.read(summary.get("counts"))
        if summary.get("error"):
            state, message = "Failed", str(summary["error"])
        elif summary.get("failed_fraction_exceeded"):
            limit = failed_fraction_allowed(record, self.config)
            state, message = "Failed", too_many_failed(counts, limit)
        else:
            state, message = "Succeeded", ""
        # The schedule first: until the batch shows its end, a firing sees its run still going.
        await run_ended(self.batches.redis, record, state, message)
        await finish(self.batches, self.config, record, state, message, counts)
