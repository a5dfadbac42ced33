"""The `kubernetes` batch backend: each gateway batch becomes a ClassificationBatch in the gateway's
namespace (named `<owner>-<short id>`, labelled with the owner); the operator runs it. Every replica
watches how they end by listing them every `batch_poll_seconds`, and settles each once.

A gateway schedule becomes a scheduled ClassificationBatch (the operator's CronJob ticks it). Its
runs are charged when they end (each run once, claimed in Redis by its Job's name); an owner who
cannot pay gets the schedule suspended, with the reason."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from typing import Any

from kubeclassify.core import constants as c
from kubeclassify.core.resources.classification_batch import failure_message
from kubeclassify.core.storage import join
from kubeclassify.gateway.batches import GATEWAY, Batches, batch_resource, finish, schedule_resource
from kubeclassify.gateway.schedules import ScheduleRecord, Schedules

log = logging.getLogger(__name__)

ENDED = ("Succeeded", "Failed")


class KubernetesBatches:
    def __init__(self, app_state: Any, api: Any) -> None:
        from kubernetes import client

        self.state = app_state
        self.config = app_state.config
        self.batches = Batches(app_state.accounts.redis)
        self.custom = client.CustomObjectsApi(api)
        self.poller: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.poller = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        if self.poller is not None:
            self.poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.poller

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

    async def _poll(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # noqa: BLE001 - the API may be away for a while; try again later
                log.warning("could not read the ClassificationBatches", exc_info=True)
            await asyncio.sleep(self.config.batch_poll_seconds)

    async def refresh(self) -> None:
        """Bring the records of active batches and of schedules in step with their resources."""
        active = set(await self.batches.active())
        scheduled = {r.name: r for r in await Schedules(self.batches.redis).every()}
        if not active and not scheduled:
            return
        listed = await self._api("list", label_selector=f"{c.LABEL_MANAGED_BY}={GATEWAY}")
        for body in listed.get("items") or []:
            name = body["metadata"]["name"]
            if name in scheduled:
                await self._charge(scheduled[name], body)
                continue
            record = await self.batches.get(name) if name in active else None
            if record is None:
                continue
            status = body.get("status") or {}
            counts = status.get("counts") or {}
            if status.get("phase") in ENDED:
                message = failure_message(status)
                await finish(self.batches, self.config, record, status["phase"], message, counts)
            elif status.get("phase") == "Running" and record.state != "Running":
                record.state = "Running"
                await self.batches.update(record)
