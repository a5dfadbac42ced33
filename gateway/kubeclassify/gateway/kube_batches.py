"""The `kubernetes` batch backend: each gateway batch becomes a ClassificationBatch in the gateway's
namespace (named `<owner>-<short id>`, labelled with the owner); the operator runs it. Every replica
follows them with one watch: a list, then a watch from that list's resourceVersion, resumed from the
last version seen when it ends and listed again on 410 Gone. A status change reaches the REST API
as the event arrives, and the API server's load does not grow with batches x replicas. Each batch
is settled once, however many replicas see its end.

A gateway schedule becomes a scheduled ClassificationBatch (the operator's CronJob ticks it). Its
runs are charged when they end (each run once, claimed in Redis by its Job's name); an owner who
cannot pay gets the schedule suspended, with the reason."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
from typing import Any

from kubeclassify.core import constants as c
from kubeclassify.core.resources.classification_batch import failure_message
from kubeclassify.core.storage import join
from kubeclassify.gateway.batches import GATEWAY, Batches, batch_resource, finish, schedule_resource
from kubeclassify.gateway.schedules import ScheduleRecord, Schedules

log = logging.getLogger(__name__)

ENDED = ("Succeeded", "Failed")
SELECTOR = f"{c.LABEL_MANAGED_BY}={GATEWAY}"
WATCH_SECONDS = 60  # a watch the API server ends after this long is resumed (a stopped gateway's
# watch thread ends within it too)


class _Gone(Exception):
    """The watch's resourceVersion is older than the API server keeps (410 Gone)."""


class KubernetesBatches:
    def __init__(self, app_state: Any, api: Any) -> None:
        from kubernetes import client

        self.state = app_state
        self.config = app_state.config
        self.batches = Batches(app_state.accounts.redis)
        self.custom = client.CustomObjectsApi(api)
        self.follower: asyncio.Task[None] | None = None
        self.stopping = threading.Event()

    async def start(self) -> None:
        self.follower = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        self.stopping.set()
        if self.follower is not None:
            self.follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.follower

    async def submit(self, name: str) -> None:
        """Create the batch's ClassificationBatch; the Kubernetes API's refusal is raised."""
        record = await self.batches.get(name)
        assert record is not None
        body = batch_resource(record, self.config)
        await self._api("create", body)

    async def create(self, schedule: ScheduleRecord) -> None:
        await Schedules(self.batches.redis).save(schedule)
        await self._api("create", schedule_resource(schedule, self.config))

    async def delete(self, schedule: ScheduleRecord) -> None:
        """Delete the schedule's ClassificationBatch (its Jobs go with it) and forget the schedule."""
        from kubernetes.client.exceptions import ApiException

        try:
            await self._api("delete", schedule.name)
        except ApiException as e:
            if e.status != 404:
                raise
        await Schedules(self.batches.redis).delete(schedule)

    async def set_paused(self, schedule: ScheduleRecord, paused: bool) -> None:
        schedule.paused, schedule.reason = paused, "paused by its owner" if paused else ""
        await self._patch(schedule.name, {"spec": {"schedule": {"suspend": paused}}})
        await Schedules(self.batches.redis).save(schedule)

    async def run(self, schedule: ScheduleRecord, date: dt.date) -> str | None:
        """Ask the operator to run the date now (its rerun annotation); the resource that runs it."""
        await self._patch(schedule.name, {"metadata": {"annotations": {c.ANNOTATION_RERUN_DATE: str(date)}}})
        return schedule.name

    async def outputs(self, schedule: ScheduleRecord) -> list[str]:
        """Every run's results under the schedule's folder, oldest date first."""
        store = self.state.store
        folder = join(self.config.batches_uri, schedule.owner, schedule.name) + "/"
        found = await asyncio.to_thread(lambda: [o.uri for o in store.iter_objects(folder)])
        return sorted(uri for uri in found if uri.endswith("/results.csv"))

    async def _patch(self, name: str, patch: dict[str, Any]) -> None:
        await self._api("patch", name, patch)

    async def _api(self, verb: str, *args: Any, **kwargs: Any) -> Any:
        """`verb`_namespaced_custom_object on this namespace's ClassificationBatches, off the loop."""
        call = getattr(self.custom, f"{verb}_namespaced_custom_object")
        where = (c.GROUP, c.VERSION, self.config.namespace, c.PLURALS[c.CLASSIFICATION_BATCH])
        return await asyncio.to_thread(call, *where, *args, _request_timeout=10, **kwargs)

    async def _charge(self, schedule: ScheduleRecord, body: dict[str, Any]) -> None:
        """Keep the schedule's record in step with its resource, and charge each ended run once."""
        status = body.get("status") or {}
        paused_for = ""
        for run in status.get("recentRuns") or []:
            if run.get("phase") not in ENDED or not run.get("jobName"):
                continue
            claim = f"kc:schedule-charged:{schedule.name}:{run['jobName']}"
            if not await self.batches.redis.set(claim, "1", nx=True):
                continue
            cost = int((run.get("counts") or {}).get("classified", 0)) * self.config.image_cost
            if cost and await self.state.accounts.debit(schedule.owner, cost) is None:
                when = run.get("date")
                paused_for = f"out of credits: the run for {when} cost {cost}; refill and resume"
                await self._patch(schedule.name, {"spec": {"schedule": {"suspend": True}}})
        # Read again just before writing: another replica or a request may have changed it meanwhile.
        schedules = Schedules(self.batches.redis)
        fresh = await schedules.get(schedule.name) or schedule
        fresh.last_date = status.get("lastProcessedDate") or fresh.last_date
        if paused_for:
            fresh.paused, fresh.reason = True, paused_for
        await schedules.save(fresh)

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
            except Exception:  # noqa: BLE001 - the API may be away for a while; try again later
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
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        def put(item: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: the gateway stopped
                loop.call_soon_threadsafe(events.put_nowait, item)

        stream = watch.Watch()
        try:
            for event in stream.stream(
                self.custom.list_namespaced_custom_object,
                c.GROUP,
                c.VERSION,
                self.config.namespace,
                c.PLURALS[c.CLASSIFICATION_BATCH],
                label_selector=SELECTOR,
                resource_version=version,
                allow_watch_bookmarks=True,
                timeout_seconds=WATCH_SECONDS,
                _request_timeout=WATCH_SECONDS + 15,
            ):
                if self.stopping.is_set():
                    stream.stop()
                    return
                put(event)
            put(None)
        except ApiException as e:
            put(_Gone() if e.status == 410 else e)
        except Exception as e:  # noqa: BLE001 - the follower decides what to do with it
            put(e)

    async def _observe(self, body: dict[str, Any]) -> None:
        """Bring a batch's record, or a schedule's, in step with its resource."""
        name = body["metadata"]["name"]
        schedule = await Schedules(self.batches.redis).get(name)
        if schedule is not None:
            await self._charge(schedule, body)
            return
        record = await self.batches.get(name)
        if record is None or record.state in ENDED:
            return
        status = body.get("status") or {}
        counts = status.get("counts") or {}
        if status.get("phase") in ENDED:
            await finish(self.batches, self.config, record, status["phase"], failure_message(status), counts)
        elif status.get("phase") == "Running" and record.state != "Running":
            record.state = "Running"
            await self.batches.update(record)

    async def _deleted(self, body: dict[str, Any]) -> None:
        """A batch's resource deleted before its end (by hand): the batch fails, and says why."""
        record = await self.batches.get(body["metadata"]["name"])
        if record is not None and record.state not in ENDED:
            message = f"its ClassificationBatch {record.name} was deleted before the batch ended"
            await finish(self.batches, self.config, record, "Failed", message, {})

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
