"""The `kubernetes` batch backend: each gateway batch becomes a ClassificationBatch in the gateway's
namespace (named `<owner>-<short id>`, labelled with the owner); the operator runs it. Every replica
follows them with one watch: a list, then a watch from that list's resourceVersion, resumed from the
last version seen when it ends and listed again on 410 Gone. A status change reaches the REST API
as the event arrives, and the API server's load does not grow with batches x replicas. Each batch
is settled once, however many replicas see its end.

Every run of a gateway batch is admitted here before it starts: the operator records it in the
batch's status (pendingRun, phase AwaitingAdmission) and makes its Job only once this gateway has
reserved the run's credits in the ledger (for the images the run's date lists now) and said so in
the batch's admission annotation. A one-off batch's first run is admitted when it is created. An
owner who cannot pay has the run refused, and a schedule suspended with the reason. Each ended run
is settled once, by its id, from the ledger. A gateway schedule becomes a scheduled
ClassificationBatch (the operator's CronJob ticks it)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubeclassify.core import constants as c
from kubeclassify.core.kubeapi import CustomObjects
from kubeclassify.core.resources.classification_batch import (
    ENDED_PHASES,
    Admission,
    BatchCounts,
    BatchReason,
    admission_of,
    failure_message,
)
from kubeclassify.core.sources import InputError
from kubeclassify.core.storage import StorageError
from kubeclassify.gateway.backends import Platform
from kubeclassify.gateway.batches import CANCELLED, Batches, BatchRecord, finish, paths, progressed
from kubeclassify.gateway.cancel import stop_if_cancelled, stop_tasks
from kubeclassify.gateway.inputs import count_for_date
from kubeclassify.gateway.ledger import Ledger
from kubeclassify.gateway.resources import batch_resource, schedule_resource
from kubeclassify.gateway.schedules import Fired, ScheduleRecord, Schedules, pause

log = logging.getLogger(__name__)

SELECTOR = f"{c.LABEL_MANAGED_BY}={c.MANAGED_BY_GATEWAY}"
RECOUNT_SECONDS = 5.0  # a run whose images could not be counted (S3 away) is looked at again after
WATCH_SECONDS = 60  # a watch the API server ends after this long is resumed (a stopped gateway's
# watch thread ends within it too)


class _Gone(Exception):
    """The watch's resourceVersion is older than the API server keeps (410 Gone)."""


class KubernetesBatches:
    def __init__(self, platform: Platform, api: Any) -> None:
        self.platform = platform
        self.config = platform.config
        self.batches = Batches(platform.accounts.redis)
        self.ledger = Ledger(platform.accounts.redis)
        self.objects = CustomObjects(api, self.config.namespace, c.PLURALS[c.CLASSIFICATION_BATCH])
        self.recounts: dict[str, asyncio.Task[None]] = {}
        self.follower: asyncio.Task[None] | None = None
        self.stopping = threading.Event()

    async def start(self) -> None:
        self.follower = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        self.stopping.set()
        await stop_tasks([self.follower, *self.recounts.values()])

    async def submit(self, name: str) -> None:
        """Create the batch's ClassificationBatch; the Kubernetes API's refusal is raised."""
        record = await self.batches.get(name)
        assert record is not None
        body = batch_resource(record, self.config)
        await self._api("create", body)

    async def cancel(self, name: str) -> None:
        """End the batch as cancelled, charged for the images its run reported done, then delete
        its ClassificationBatch: its Job and the Job's pods go with it (owner references). A batch
        whose resource says it has ended is recorded as it ended instead."""
        record = await self.batches.get(name)
        if record is None or record.state in ENDED_PHASES:
            return
        body = await self._api("get", name)
        status = (body or {}).get("status") or {}
        if body is not None and status.get("phase") in ENDED_PHASES:
            await self._observe(body)
            return
        counts = BatchCounts.read(status.get("counts")) if body is not None else record.counts
        await finish(self.batches, self.config, record, "Failed", CANCELLED, counts)  # before the delete,
        await self.forget(name)  # so the watch's DELETED finds the batch ended, not deleted by hand

    async def forget(self, name: str) -> None:
        """Delete the batch's ClassificationBatch, if it is still there."""
        await self._api("delete", name)

    async def create(self, schedule: ScheduleRecord) -> None:
        await Schedules(self.batches.redis).save(schedule)
        await self._api("create", schedule_resource(schedule, self.config))

    async def delete(self, schedule: ScheduleRecord) -> None:
        """Delete the schedule's ClassificationBatch (its Jobs go with it) and forget the schedule."""
        await self._api("delete", schedule.name)
        await Schedules(self.batches.redis).delete(schedule)

    async def set_paused(self, schedule: ScheduleRecord, paused: bool) -> None:
        schedule.paused, schedule.reason = paused, "paused by its owner" if paused else ""
        await self._patch(schedule.name, {"spec": {"schedule": {"suspend": paused}}})
        await Schedules(self.batches.redis).save(schedule)

    async def update(self, schedule: ScheduleRecord, edit: Callable[[ScheduleRecord], None]) -> None:
        """Change the schedule's ClassificationBatch (a run that is going ends as it was started),
        then the stored schedule."""
        spec = schedule_resource(schedule, self.config)["spec"]
        changed = {"cron", "timeZone", "catchUp"}
        patch = {"modelRef": spec["modelRef"], "schedule": {k: spec["schedule"][k] for k in changed}}
        await self._patch(schedule.name, {"spec": patch})
        await Schedules(self.batches.redis).change(schedule.name, edit)

    async def fire_now(self, schedule: ScheduleRecord) -> Fired | None:
        """Tick the schedule's ClassificationBatch now, as its CronJob does: the operator takes the
        next due date (what it takes is not known here: None)."""
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        await self._patch(schedule.name, {"metadata": {"annotations": {c.ANNOTATION_TICK: now}}})
        return None

    async def run(self, schedule: ScheduleRecord, date: dt.date) -> str | None:
        """Ask the operator to run the date now (its rerun annotation); the resource that runs it."""
        await self._patch(schedule.name, {"metadata": {"annotations": {c.ANNOTATION_RERUN_DATE: str(date)}}})
        return schedule.name

    async def history(self, schedule: ScheduleRecord, limit: int) -> list[dict[str, Any]]:
        """The runs the schedule's ClassificationBatch keeps in its status (its recent ones),
        newest first."""
        body = await self._api("get", schedule.name)
        runs = ((body or {}).get("status") or {}).get("recentRuns") or []
        return [
            {"date": r.get("date"), "batch": r.get("jobName"), "state": r.get("phase") or "Pending",
             "message": r.get("message"), "counts": BatchCounts.read(r.get("counts")),
             "started": r.get("startTime"), "finished": r.get("completionTime")}
            for r in reversed(runs[-limit:])
        ]  # fmt: skip

    async def outputs(self, schedule: ScheduleRecord) -> list[str]:
        """Every run's results under the schedule's folder, oldest date first."""
        store = self.platform.store
        folder = paths(self.config.batches_uri, schedule.owner, schedule.name)["folder"]
        found = await asyncio.to_thread(lambda: [o.uri for o in store.iter_objects(folder)])
        return sorted(uri for uri in found if uri.endswith("/results.csv"))

    async def _patch(self, name: str, patch: dict[str, Any]) -> None:
        await self._api("patch", name, patch)

    async def _api(self, verb: str, *args: Any, **kwargs: Any) -> Any:
        """`verb` on this namespace's ClassificationBatches, off the loop."""
        return await asyncio.to_thread(getattr(self.objects, verb), *args, **kwargs)

    async def _admit(self, body: dict[str, Any]) -> None:
        """Answer the run the batch's status says waits for admission: reserve its credits in the
        ledger and admit it for its images, or refuse it (and suspend a schedule) when its owner
        cannot pay. Every replica decides alike: the ledger answers a run id once."""
        status, metadata = body.get("status") or {}, body["metadata"]
        pending = status.get("pendingRun") or {}
        owner = (metadata.get("labels") or {}).get(c.LABEL_OWNER)
        if status.get("phase") != "AwaitingAdmission" or not pending.get("id") or not owner:
            return
        answered = admission_of(metadata)
        if answered is not None and answered.run == pending["id"]:
            return
        name, run = metadata["name"], pending["id"]
        try:
            images = await self._images(name, pending.get("date"))
        except (InputError, StorageError) as e:
            log.warning("could not count a run's images; again soon", extra={"run": run, "error": str(e)})
            self._recount(name)
            return
        price = self.config.image_cost
        decided = await self.ledger.reserve(run, owner, images, price, time.time())
        if decided.admitted:
            admission = Admission(run=run, images=decided.images)
        else:
            cost = decided.images * price
            reason = (
                f"out of credits: run {run} has {decided.images} images, which cost {cost}; refill and resume"
            )
            admission = Admission(run=run, refused=reason)
            if await Schedules(self.batches.redis).get(name) is not None:
                await self._patch(name, {"spec": {"schedule": {"suspend": True}}})
                await pause(Schedules(self.batches.redis), name, reason)
        await self._patch(name, {"metadata": {"annotations": admission.annotation()}})

    async def _images(self, name: str, date: str | None) -> int:
        """How many images a run of the batch classifies: its CSV's rows, or the images the manifest
        lists for the run's date now."""
        record = await self.batches.get(name)
        if record is not None and record.column != "manifest":
            return record.counts.total
        if date is None or self.config.manifest is None:
            raise InputError(f"a run of {name} names no date, or no manifest is configured")
        day = dt.date.fromisoformat(date)
        return await asyncio.to_thread(count_for_date, self.config.manifest, day, self.platform.store)

    def _recount(self, name: str) -> None:
        """Look at the batch again in a while (its run's images could not be counted)."""

        async def again() -> None:
            await asyncio.sleep(RECOUNT_SECONDS)
            self.recounts.pop(name, None)
            with contextlib.suppress(Exception):
                body = await self._api("get", name)
                if body is not None:
                    await self._observe(body)

        if name not in self.recounts:
            self.recounts[name] = asyncio.create_task(again())

    async def _settle(self, body: dict[str, Any]) -> None:
        """Settle each ended run of the batch in the ledger (once per run id: the ledger keeps it)."""
        owner = (body["metadata"].get("labels") or {}).get(c.LABEL_OWNER)
        for run in (body.get("status") or {}).get("recentRuns") or []:
            if owner and run.get("phase") in ENDED_PHASES and run.get("jobName"):
                classified = int((run.get("counts") or {}).get("classified", 0))
                await self.ledger.settle(run["jobName"], owner, classified)

    async def _follow_schedule(self, schedule: ScheduleRecord, body: dict[str, Any]) -> None:
        """Keep the schedule's record in step with its resource: the last date done, and a pause
        when the operator stopped trying a date that keeps failing."""
        status = body.get("status") or {}
        ready: dict[str, Any] = next(
            (x for x in status.get("conditions") or [] if x.get("type") == "Ready"), {}
        )
        schedules = Schedules(self.batches.redis)
        fresh = await schedules.get(schedule.name)  # read just before writing: it may have changed
        if fresh is None:
            return
        last_date = status.get("lastProcessedDate") or fresh.last_date
        if last_date != fresh.last_date:

            def advance(s: ScheduleRecord) -> None:
                s.last_date = last_date

            await schedules.change(schedule.name, advance)
        if ready.get("reason") == BatchReason.RETRIES_EXHAUSTED and not fresh.paused:
            await self._patch(schedule.name, {"spec": {"schedule": {"suspend": True}}})
            await pause(schedules, schedule.name, str(ready.get("message") or "its runs kept failing"))

    async def _follow(self) -> None:
        """List, then watch from the list's version; resume after a watch ends, list again on 410."""
        version: str | None = None
        delay = 1.0
        while True:
            try:
                if version is None:
                    version = await self.refresh()
                version = await self._watch(version)
                delay = 1.0
            except _Gone:
                version = None  # the version is older than the API server keeps: list again
            except Exception as e:  # noqa: BLE001 - the API or Redis may be away a while; again later
                stop_if_cancelled(e)
                log.warning("could not follow the ClassificationBatches", exc_info=True)
                version = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _watch(self, version: str) -> str:
        """Observe each change from `version` until the watch ends; the last version seen."""
        loop, events = asyncio.get_running_loop(), asyncio.Queue[Any]()
        threading.Thread(target=self._stream, args=(version, loop, events), daemon=True).start()
        while True:
            event = await events.get()
            if isinstance(event, BaseException):
                raise event
            if event is None:
                return version
            body = event["object"]
            version = (body.get("metadata") or {}).get("resourceVersion") or version
            if event["type"] in ("ADDED", "MODIFIED"):
                await self._observe(body)
            elif event["type"] == "DELETED":
                await self._deleted(body)

    def _stream(self, version: str, loop: asyncio.AbstractEventLoop, events: asyncio.Queue[Any]) -> None:
        """The watch itself, on a thread of its own (the client blocks): each event into `events`,
        then None when it ends, or the error."""
        from kubernetes.client.exceptions import ApiException

        def put(item: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: the gateway stopped
                loop.call_soon_threadsafe(events.put_nowait, item)

        stream = self.objects.watch(
            label_selector=SELECTOR,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SECONDS,
            _request_timeout=WATCH_SECONDS + 15,
        )
        try:
            with contextlib.closing(stream):
                for event in stream:
                    if self.stopping.is_set():
                        return
                    put(event)
            put(None)
        except ApiException as e:
            put(_Gone() if e.status == 410 else e)
        except Exception as e:  # noqa: BLE001 - the follower decides what to do with it
            put(e)

    async def _observe(self, body: dict[str, Any]) -> None:
        """Admit a run that waits, settle the runs that ended, and bring the batch's record (or
        the schedule's) in step with its resource."""
        name = body["metadata"]["name"]
        await self._admit(body)
        await self._settle(body)
        schedule = await Schedules(self.batches.redis).get(name)
        if schedule is not None:
            await self._follow_schedule(schedule, body)
            return
        record = await self.batches.get(name)
        if record is None or record.state in ENDED_PHASES:
            return
        status = body.get("status") or {}
        counts = BatchCounts.read(status.get("counts"))
        if status.get("phase") in ENDED_PHASES:
            await finish(self.batches, self.config, record, status["phase"], failure_message(status), counts)
        elif status.get("phase") == "Running":
            now, rate = time.time(), status.get("imagesPerSecond")

            def running(r: BatchRecord) -> bool:
                started, r.state = r.state != "Running", "Running"
                return progressed(r, counts, rate, now) or started

            await self.batches.change_running(name, running)

    async def _deleted(self, body: dict[str, Any]) -> None:
        """A batch's resource deleted before its end (by hand): the batch fails, and says why."""
        record = await self.batches.get(body["metadata"]["name"])
        if record is not None and record.state not in ENDED_PHASES:
            message = f"its ClassificationBatch {record.name} was deleted before the batch ended"
            await finish(self.batches, self.config, record, "Failed", message, BatchCounts())

    async def refresh(self) -> str:
        """Bring every record in step with its resource, from one list; the list's resourceVersion."""
        listed = await self._api("list", label_selector=SELECTOR)
        for body in listed.get("items") or []:
            await self._observe(body)
        listed_names = {body["metadata"]["name"] for body in listed.get("items") or []}
        for name in set(await self.batches.active()) - listed_names:  # deleted while no one watched
            record = await self.batches.get(name)
            if record is not None and record.state != "Pending":
                await self._deleted({"metadata": {"name": name}})
        return str(listed["metadata"]["resourceVersion"])
