"""When a cron schedule fires, read as a Kubernetes CronJob reads it (pure).

One rule for both backends: the operator's CronJob is fired by Kubernetes, the local backend's
scheduler fires at the times computed here, and both show them in status. Kubernetes' CronJob
controller reads the five standard fields with robfig/cron (v3):

- day of week 0 and 7 are Sunday (1 is Monday);
- when day of month and day of week are both restricted, a day matching either fires; when one
  of them is `*`, both must match;
- times are wall-clock times in the schedule's time zone (`timeZone`): a time that the
  spring-forward gap skips does not fire that day (robfig/cron: "jobs scheduled during
  daylight-savings leap-ahead transitions will not be run"), and a time that the fall-back hour
  repeats fires at both instants.

croniter gives the candidates (it reads the fields as above); a candidate that croniter moved out
of the spring-forward gap is not a time the schedule names, and is dropped.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from croniter import croniter

_SEARCH = 1000  # candidates looked at before giving up (a date such as 30 February never comes)


def next_fire(cron: str, time_zone: str, after: dt.datetime) -> dt.datetime:
    """The first time after `after` (aware) that the schedule fires, in its time zone."""
    return fire_times(cron, time_zone, after, 1)[0]


def fire_times(cron: str, time_zone: str, after: dt.datetime, count: int) -> list[dt.datetime]:
    """The next `count` times after `after` (aware) that the schedule fires, in its time zone."""
    candidates = croniter(cron, after.astimezone(ZoneInfo(time_zone)))
    fires: list[dt.datetime] = []
    for _ in range(_SEARCH * count):
        fire: dt.datetime = candidates.get_next(dt.datetime)
        if croniter.match(cron, fire.replace(tzinfo=None)):  # a wall time the schedule names
            fires.append(fire)
            if len(fires) == count:
                return fires
    raise ValueError(f"the schedule {cron!r} does not fire")


def shortest_gap(cron: str, time_zone: str, after: dt.datetime, count: int = 60) -> dt.timedelta:
    """The shortest time between two of the schedule's next `count` firings (a cron's pattern shows
    within a day's firings, and a schedule that fires less than daily shows its gaps as widely)."""
    fires = fire_times(cron, time_zone, after, count)
    return min((b - a for a, b in zip(fires, fires[1:], strict=False)), default=dt.timedelta.max)
