"""Daily schedules over the configured manifest, for the local batch backend.

A schedule fires on its cron (in its time zone) and processes the next date its rules give
(`kubeclassify.core.schedule`: yesterday, or day by day with catch-up): it counts that day's images,
skips a day with none, pays for them and starts a date batch. A date is done (`last_date`) when its
run succeeded or it had no images; a failed run is tried again on the next firing, and after
MAX_FAILURES failed runs in a row the schedule pauses with the reason. Runs of one schedule never
overlap. An owner without enough credits gets the schedule paused, with the reason. The crons fire
at the times `kubeclassify.core.cron` computes, as a Kubernetes CronJob would fire them; the
schedules live in Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from redis.exceptions import LockError, WatchError

from kubeclassify.core.cron import next_fire
from kubeclassify.core.resources.classification_batch import ENDED_PHASES, BatchCounts, ScheduleSpec
from kubeclassify.core.schedule import next_date, upcoming_date
from kubeclassify.core.sources import InputError
from kubeclassify.gateway.backends import BatchBackend, Platform
from kubeclassify.gateway.batches import Batches, BatchRecord, paths
from kubeclassify.gateway.cancel import stop_tasks
from kubeclassify.gateway.inputs import count_for_date
from kubeclassify.gateway.ledger import Ledger

log = logging.getLogger(__name__)


@dataclass
class ScheduleRecord:
    name: str
    owner: str
    model: str
    cron: str
    time_zone: str = "UTC"
    start_date: str | None = None
    catch_up: bool = False
    paused: bool = False
    reason: str = ""
    last_date: str | None = None
    created: float = field(default_factory=time.time)
    webhook_url: str | None = None
    failures: int = 0  # failed runs in a row (of the date it is on)
    last_error: str = ""  # why the last run failed

    def spec(self) -> ScheduleSpec:
        return ScheduleSpec(
            cron=self.cron, time_zone=self.time_zone, start_date=self.start_date, catch_up=self.catch_up
        )

    def public(self, now: dt.datetime) -> dict[str, Any]:
        out = asdict(self)
        del out["webhook_url"]
        last = dt.date.fromisoformat(self.last_date) if self.last_date else None
        out["next_date"] = upcoming_date(self.spec(), last, now).isoformat()
        out["next_run"] = None if self.paused else next_fire(self.cron, self.time_zone, now).isoformat()
        return out


class Schedules:
    def __init__(self, redis: Any) -> None:
        self.redis = redis

    async def save(self, record: ScheduleRecord) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(f"kc:schedule:{record.name}", json.dumps(asdict(record)))
            pipe.zadd(f"kc:schedules:{record.owner}", {record.name: record.created})
            pipe.sadd("kc:schedules", record.name)
            await pipe.execute()

    async def get(self, name: str) -> ScheduleRecord | None:
        raw = await self.redis.get(f"kc:schedule:{name}")
        return ScheduleRecord(**json.loads(raw)) if raw else None

    async def of(self, owner: str) -> list[ScheduleRecord]:
        names = await self.redis.zrevrange(f"kc:schedules:{owner}", 0, -1)
        return [r for r in [await self.get(n) for n in names] if r is not None]

    async def every(self) -> list[ScheduleRecord]:
        return [
            r for r in [await self.get(n) for n in sorted(await self.redis.smembers("kc:schedules"))] if r
        ]

    async def runs(self, name: str, last: int | None = None) -> list[str]:
        """The batches a schedule started (the `last` ones), oldest first."""
        return list(await self.redis.lrange(f"kc:schedule-runs:{name}", -last if last else 0, -1))

    async def delete(self, record: ScheduleRecord) -> None:
        """Forget the schedule (its runs' batches and results stay)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(f"kc:schedule:{record.name}")
            pipe.zrem(f"kc:schedules:{record.owner}", record.name)
            pipe.srem("kc:schedules", record.name)
            await pipe.execute()

    async def change(self, name: str, edit: Callable[[ScheduleRecord], None]) -> ScheduleRecord | None:
        """Apply `edit` to the stored schedule, as one transaction (a concurrent change retries it)."""
        key = f"kc:schedule:{name}"
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    if raw is None:
                        return None
                    record = ScheduleRecord(**json.loads(raw))
                    edit(record)
                    pipe.multi()
                    pipe.set(key, json.dumps(asdict(record)))
                    await pipe.execute()
                    return record
                except WatchError:
                    continue


MAX_FAILURES = 3  # failed runs in a row before a schedule pauses


class RunInProgress(Exception):
    """A run of the schedule has not ended: runs of one schedule never overlap."""


async def run_ended(redis: Any, record: BatchRecord, state: str, message: str) -> None:
    """A schedule's run ended as `state` (once per run): a success marks its date done; a failed run
    of the cron's is counted, and the schedule pauses, with the reason, after MAX_FAILURES in a row.
    Called before the batch records its end, so that a firing meanwhile sees the run still going."""
    if record.schedule is None or record.date is None:
        return
    if not await redis.set(f"kc:schedule-run-ended:{record.name}", "1", nx=True, ex=30 * 86400):
        return
    date, message = record.date, message or "the run failed"

    def edit(schedule: ScheduleRecord) -> None:
        if state == "Succeeded":
            schedule.last_date = max(date, schedule.last_date or date)
            schedule.failures, schedule.last_error = 0, ""
        elif not record.manual:
            schedule.failures += 1
            schedule.last_error = f"{date}: {message}"
            if schedule.failures >= MAX_FAILURES and not schedule.paused:
                schedule.paused = True
                schedule.reason = (
                    f"{date} failed {schedule.failures} times in a row ({message[:300]}); resume to try again"
                )

    await Schedules(redis).change(record.schedule, edit)


async def pause(schedules: Schedules, name: str, reason: str) -> None:
    """Pause the schedule, saying why (its owner resumes it)."""

    def edit(s: ScheduleRecord) -> None:
        s.paused, s.reason = True, reason

    await schedules.change(name, edit)


def new_schedule_name(owner: str) -> str:
    return f"{owner}-s{secrets.token_hex(4)}"


async def run_date(
    platform: Platform, backend: BatchBackend, schedule: ScheduleRecord, date: dt.date, manual: bool = False
) -> BatchRecord | None:
    """Start the schedule's batch for `date`: None when the day has no images (the day is done).
    Raises RunInProgress while a run of the schedule has not ended (or another is starting), and
    OutOfCredits, having paused the schedule with the reason, when its owner cannot pay."""
    # One start at a time per schedule: the check that no run is going and the start are one step.
    lock = platform.accounts.redis.lock(f"kc:schedule-start:{schedule.name}", timeout=600, blocking_timeout=1)
    if not await lock.acquire():
        raise RunInProgress("another run of it is starting")
    try:
        return await _start(platform, backend, schedule, date, manual)
    finally:
        with contextlib.suppress(LockError):  # held past its timeout: another start may have it now
            await lock.release()


async def _start(
    platform: Platform, backend: BatchBackend, schedule: ScheduleRecord, date: dt.date, manual: bool
) -> BatchRecord | None:
    config, accounts = platform.config, platform.accounts
    schedules, batches = Schedules(accounts.redis), Batches(accounts.redis)
    last = (await schedules.runs(schedule.name))[-1:]
    running = await batches.get(last[0]) if last else None
    if running is not None and running.state not in ENDED_PHASES:
        raise RunInProgress(f"its run {running.name} for {running.date} has not ended")
    if config.manifest is None:  # schedules made before this gateway lost its manifest setting
        raise InputError("no manifest is configured here, so a schedule has nothing to run")
    count = await asyncio.to_thread(count_for_date, config.manifest, date, platform.store)
    if count == 0:
        return None
    cost = count * config.image_cost
    name = f"{schedule.name}-{date:%Y%m%d}-{secrets.token_hex(2)}"
    if not (
        await Ledger(accounts.redis).reserve(name, schedule.owner, count, config.image_cost, time.time())
    ).admitted:
        reason = f"out of credits: {date} has {count} images, which cost {cost}; refill and resume"
        await pause(schedules, schedule.name, reason)
        raise OutOfCredits(reason)
    record = BatchRecord(
        name=name,
        owner=schedule.owner,
        model=schedule.model,
        column="manifest",
        input_uri="",
        output_uri=paths(config.batches_uri, schedule.owner, name)["output"],
        counts=BatchCounts(total=count),
        reserved=cost,
        webhook_url=schedule.webhook_url,
        date=date.isoformat(),
        schedule=schedule.name,
        manual=manual,
    )
    await batches.add(record)
    await accounts.redis.rpush(f"kc:schedule-runs:{schedule.name}", name)
    await backend.submit(name)
    return record


@dataclass(frozen=True)
class Fired:
    """What a firing did: the date it took, and the batch that runs it (None: the day had no
    images, so it is done)."""

    date: dt.date
    batch: str | None


class NothingDue(Exception):
    """Every complete day up to yesterday (in the schedule's zone) is done."""


async def fire(
    platform: Platform, backend: BatchBackend, schedule: ScheduleRecord, now: dt.datetime | None = None
) -> Fired:
    """One firing of a schedule: its next due date (yesterday, or with catch-up the day after the
    last one done) runs, or is done at once when it has no images. Raises NothingDue, and
    RunInProgress and OutOfCredits as `run_date` does."""
    last = dt.date.fromisoformat(schedule.last_date) if schedule.last_date else None
    date = next_date(schedule.spec(), last, now or dt.datetime.now(dt.UTC))
    if date is None:
        raise NothingDue(f"every day up to yesterday in {schedule.time_zone} is done")
    started = await run_date(platform, backend, schedule, date)
    if started is None:  # no images: the day is done

        def skip(s: ScheduleRecord) -> None:
            s.last_date = max(date.isoformat(), s.last_date or "")

        await Schedules(platform.accounts.redis).change(schedule.name, skip)
    return Fired(date, None if started is None else started.name)


async def tick(platform: Platform, backend: BatchBackend, name: str, now: dt.datetime | None = None) -> None:
    """One firing of a schedule's cron, unless it is paused; nothing when no date is due, a run of
    it is going (it ends first), or its owner cannot pay (it is paused, with the reason)."""
    schedule = await Schedules(platform.accounts.redis).get(name)
    if schedule is None or schedule.paused:
        return
    with contextlib.suppress(NothingDue, RunInProgress, OutOfCredits):
        await fire(platform, backend, schedule, now)


class Scheduler:
    """The crons of every schedule, in this (single) gateway: each schedule's next firing, computed by
    `core.cron` from the one before, and one task that sleeps until the soonest and ticks it. A
    firing that comes while the schedule's last tick still runs is skipped (as a CronJob's
    `concurrencyPolicy: Forbid`), and firings missed while the gateway was down are not replayed:
    the next tick takes the due date (or, with catch-up, each missed date in turn)."""

    LONGEST_SLEEP = 60.0  # seconds: the clock is looked at again at least this often

    def __init__(
        self,
        platform: Platform,
        backend: BatchBackend,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.platform, self.backend, self.clock = platform, backend, clock
        self._crons: dict[str, tuple[str, str]] = {}
        self._next: dict[str, dt.datetime] = {}
        self._ticks: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        for schedule in await Schedules(self.platform.accounts.redis).every():
            self.add(schedule)
        self._task = asyncio.create_task(self._fire_when_due(), name="schedules")

    def add(self, schedule: ScheduleRecord) -> None:
        """Plan the schedule's next firing (again, for one that changed)."""
        self._crons[schedule.name] = (schedule.cron, schedule.time_zone)
        self._next[schedule.name] = next_fire(schedule.cron, schedule.time_zone, self.clock())
        self._wake.set()

    def planned(self, name: str) -> dt.datetime:
        """When the schedule fires next."""
        return self._next[name]

    def advance(self, name: str, now: dt.datetime | None = None) -> None:
        """Plan the firing after the planned one (or, when `now` is later, the first after `now`)."""
        cron, zone = self._crons[name]
        self._next[name] = next_fire(cron, zone, max(self._next[name], now or self._next[name]))

    async def _fire_when_due(self) -> None:
        while True:
            now = self.clock()
            for name, when in list(self._next.items()):
                if when > now:
                    continue
                self.advance(name, now)
                if name not in self._ticks or self._ticks[name].done():
                    self._ticks[name] = asyncio.create_task(self._tick(name), name=f"schedule {name}")
            soonest = min(self._next.values(), default=None)
            wait = self.LONGEST_SLEEP if soonest is None else (soonest - now).total_seconds()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(max(wait, 0.0), self.LONGEST_SLEEP))

    async def fire(self, name: str, now: dt.datetime | None = None) -> None:
        """One firing of the schedule's cron now (`tick`)."""
        await tick(self.platform, self.backend, name, now)

    async def _tick(self, name: str) -> None:
        try:
            await self.fire(name)
        except Exception:  # one schedule's failure stops no other; the next firing tries again
            log.exception("a schedule's tick failed", extra={"schedule": name})

    async def stop(self) -> None:
        await stop_tasks([self._task, *self._ticks.values()])

    async def create(self, schedule: ScheduleRecord) -> None:
        await Schedules(self.platform.accounts.redis).save(schedule)
        self.add(schedule)

    async def delete(self, schedule: ScheduleRecord) -> None:
        """No more firings; a run that is going ends as it would."""
        await Schedules(self.platform.accounts.redis).delete(schedule)
        self._crons.pop(schedule.name, None)
        self._next.pop(schedule.name, None)

    async def set_paused(self, schedule: ScheduleRecord, paused: bool) -> None:
        def edit(s: ScheduleRecord) -> None:
            s.paused, s.reason = paused, "paused by its owner" if paused else ""
            if not paused:
                s.failures = 0  # resumed: the date it is on gets its tries again

        edit(schedule)  # the caller's copy, and the stored one
        await Schedules(self.platform.accounts.redis).change(schedule.name, edit)

    async def update(self, schedule: ScheduleRecord, edit: Callable[[ScheduleRecord], None]) -> None:
        """Store the change and plan the next firing by the cron as it is now."""
        await Schedules(self.platform.accounts.redis).change(schedule.name, edit)
        if schedule.name in self._crons:
            self.add(schedule)

    async def fire_now(self, schedule: ScheduleRecord) -> Fired | None:
        """Fire the schedule now, as its cron would (`fire`)."""
        return await fire(self.platform, self.backend, schedule, self.clock())

    async def run(self, schedule: ScheduleRecord, date: dt.date) -> str | None:
        """Start the date now, as its owner asks, paused or not: the batch's name, or None when the
        day has no images. Raises RunInProgress and OutOfCredits as `run_date` does."""
        started = await run_date(self.platform, self.backend, schedule, date, manual=True)
        return None if started is None else started.name

    async def history(self, schedule: ScheduleRecord, limit: int) -> list[dict[str, Any]]:
        """The schedule's last runs, newest first: each one's batch as it stands."""
        redis = self.platform.accounts.redis
        names = reversed(await Schedules(redis).runs(schedule.name, limit))
        found = [await Batches(redis).get(n) for n in names]
        return [
            {"date": b.date, "batch": b.name, "state": b.state, "message": b.message,
             "counts": b.counts, "started": b.created, "finished": b.finished}
            for b in found if b is not None
        ]  # fmt: skip

    async def outputs(self, schedule: ScheduleRecord) -> list[str]:
        """The results of the schedule's finished runs: each date's latest run once, by date."""
        batches = Batches(self.platform.accounts.redis)
        runs = [
            await batches.get(n) for n in await Schedules(self.platform.accounts.redis).runs(schedule.name)
        ]
        latest = {b.date: b for b in runs if b is not None and b.state in ENDED_PHASES}
        return [latest[date].output_uri for date in sorted(d for d in latest if d is not None)]


class OutOfCredits(Exception):
    """The owner cannot pay for the run: the schedule is paused, the message says so."""
