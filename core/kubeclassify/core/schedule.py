"""Which date a daily batch processes next (pure).

A tick at time T processes dates up to yesterday in the schedule's time zone: a day's images are
complete once the day is over. The first date is `startDate` (or yesterday); after that, the day
after the last processed one. Without `catchUp`, missed days are skipped and the run takes
yesterday; with it, runs go day by day until yesterday.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from kubeclassify.core.resources.classification_batch import ScheduleSpec


def yesterday(schedule: ScheduleSpec, now: dt.datetime) -> dt.date:
    """The last complete day at `now`, in the schedule's time zone."""
    return now.astimezone(ZoneInfo(schedule.time_zone)).date() - dt.timedelta(days=1)


def next_date(schedule: ScheduleSpec, last_processed: dt.date | None, now: dt.datetime) -> dt.date | None:
    """The date the next run processes, or None when every complete day is done."""
    latest = yesterday(schedule, now)
    candidate = _first_unprocessed(schedule, last_processed, latest)
    if candidate > latest:
        return None
    return candidate if schedule.catch_up else latest


def upcoming_date(schedule: ScheduleSpec, last_processed: dt.date | None, now: dt.datetime) -> dt.date:
    """The date the next run will process, for status: the one due now, or a later one."""
    latest = yesterday(schedule, now)
    return next_date(schedule, last_processed, now) or max(
        _first_unprocessed(schedule, last_processed, latest), latest + dt.timedelta(days=1)
    )


def _first_unprocessed(schedule: ScheduleSpec, last_processed: dt.date | None, latest: dt.date) -> dt.date:
    if last_processed is not None:
        return last_processed + dt.timedelta(days=1)
    return schedule.start_date or latest
