"""When schedules fire: one table, with what a Kubernetes CronJob does as the expected value, checked
against the rule in core (status, the operator's CronJob) and against the local backend's scheduler.

No CronJob controller runs here. Each row names where its expectation comes from:
- "k8s": the CronJob documentation's schedule syntax (kubernetes.io, "CronJob": the five fields,
  day of week 0-6 with Sunday 0, names, ranges, steps and lists; `timeZone` is an IANA zone);
- "robfig": robfig/cron v3, which the CronJob controller uses to compute fire times: its tests
  (`spec_test.go`: when day of month and day of week are both restricted either matches, when one
  is `*` both must; a time in the spring-forward gap is skipped, "0 30 2 11 Mar ?" next fires a
  year later; a time in the repeated fall-back hour fires at both instants) and its documentation
  ("jobs scheduled during daylight-savings leap-ahead transitions will not be run").
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from kubeclassify.core.cron import fire_times
from kubeclassify.core.resources.classification_batch import ScheduleSpec
from kubeclassify.gateway.schedules import Scheduler, ScheduleRecord

UTC, NY, BERLIN = dt.UTC, ZoneInfo("America/New_York"), ZoneInfo("Europe/Berlin")


def at(zone: dt.tzinfo, *fields: int, fold: int = 0) -> dt.datetime:
    return dt.datetime(*fields, tzinfo=zone, fold=fold)  # type: ignore[misc]


# (cron, time zone, after, the next fire times, source). 2026-12-04 is a Friday.
TABLE = [
    # Weekdays: 1 is Monday, 0 is Sunday (APScheduler's from_crontab took 1 for Tuesday).
    (
        "30 1 * * 1",
        "UTC",
        at(UTC, 2026, 12, 4),
        [at(UTC, 2026, 12, 7, 1, 30), at(UTC, 2026, 12, 14, 1, 30)],
        "k8s",
    ),
    (
        "30 1 * * 0",
        "UTC",
        at(UTC, 2026, 12, 4),
        [at(UTC, 2026, 12, 6, 1, 30), at(UTC, 2026, 12, 13, 1, 30)],
        "k8s",
    ),
    ("30 1 * * sun", "UTC", at(UTC, 2026, 12, 4), [at(UTC, 2026, 12, 6, 1, 30)], "k8s"),
    (
        "0 9 * * mon-fri",
        "UTC",
        at(UTC, 2026, 12, 4, 10),
        [at(UTC, 2026, 12, 7, 9), at(UTC, 2026, 12, 8, 9)],
        "k8s",
    ),
    # Day of month with day of week: both restricted, either one; one of them *, both.
    (
        "0 0 1,15 * 5",
        "UTC",
        at(UTC, 2026, 12, 1, 1),
        [at(UTC, 2026, 12, 4), at(UTC, 2026, 12, 11), at(UTC, 2026, 12, 15), at(UTC, 2026, 12, 18)],
        "robfig",
    ),
    ("0 0 1,15 * *", "UTC", at(UTC, 2026, 12, 1, 1), [at(UTC, 2026, 12, 15), at(UTC, 2027, 1, 1)], "robfig"),
    ("0 0 * * 5", "UTC", at(UTC, 2026, 12, 1, 1), [at(UTC, 2026, 12, 4), at(UTC, 2026, 12, 11)], "robfig"),
    # Ranges and steps.
    (
        "*/20 9-10 * * *",
        "UTC",
        at(UTC, 2026, 12, 4, 10, 30),
        [at(UTC, 2026, 12, 4, 10, 40), at(UTC, 2026, 12, 5, 9), at(UTC, 2026, 12, 5, 9, 20)],
        "k8s",
    ),
    ("0 0 29 2 *", "UTC", at(UTC, 2026, 12, 4), [at(UTC, 2028, 2, 29)], "robfig"),
    # Time zones: the wall time in the zone, whatever UTC says.
    ("30 1 * * *", "Europe/Berlin", at(UTC, 2026, 12, 4), [at(BERLIN, 2026, 12, 4, 1, 30)], "k8s"),
    # 03:00 UTC on Friday is 22:00 on Thursday in New York: Thursday 23:00 there is an hour away.
    ("0 23 * * 4", "America/New_York", at(UTC, 2026, 12, 4, 3), [at(NY, 2026, 12, 3, 23)], "k8s"),
    # Spring forward in New York, 2026-03-08 02:00 -> 03:00: 02:30 does not exist that day.
    (
        "30 2 * * *",
        "America/New_York",
        at(NY, 2026, 3, 7, 12),
        [at(NY, 2026, 3, 9, 2, 30), at(NY, 2026, 3, 10, 2, 30)],
        "robfig",
    ),
    (
        "0 * * * *",
        "America/New_York",
        at(NY, 2026, 3, 8, 0, 30),
        [at(NY, 2026, 3, 8, 1), at(NY, 2026, 3, 8, 3), at(NY, 2026, 3, 8, 4)],
        "robfig",
    ),
    # Fall back in New York, 2026-11-01 02:00 EDT -> 01:00 EST: 01:30 comes twice, and fires twice.
    (
        "30 1 * * *",
        "America/New_York",
        at(NY, 2026, 10, 31, 12),
        [at(NY, 2026, 11, 1, 1, 30), at(NY, 2026, 11, 1, 1, 30, fold=1), at(NY, 2026, 11, 2, 1, 30)],
        "robfig",
    ),
]


def ids(row: tuple[object, ...]) -> str:
    return f"{row[0]} {row[1]} from {row[2]}"


@pytest.mark.parametrize(("cron", "zone", "after", "expected", "source"), TABLE, ids=[ids(r) for r in TABLE])
def test_fire_times_as_a_cronjob_computes_them(
    cron: str, zone: str, after: dt.datetime, expected: list[dt.datetime], source: str
) -> None:
    fires = fire_times(cron, zone, after, len(expected))
    assert [f.astimezone(UTC) for f in fires] == [e.astimezone(UTC) for e in expected], source
    assert all(f.tzinfo == ZoneInfo(zone) for f in fires), "in the schedule's own time zone"


@pytest.mark.parametrize(("cron", "zone", "after", "expected", "source"), TABLE, ids=[ids(r) for r in TABLE])
def test_the_local_scheduler_plans_the_same_times(
    cron: str, zone: str, after: dt.datetime, expected: list[dt.datetime], source: str
) -> None:
    """The local backend fires where the table says: it plans each next firing from the last."""
    scheduler = Scheduler(None, None, clock=lambda: after)  # type: ignore[arg-type]  # plans only
    scheduler.add(ScheduleRecord(name="s", owner="alice", model="digits", cron=cron, time_zone=zone))
    planned = []
    for _ in expected:
        planned.append(scheduler.planned("s"))
        scheduler.advance("s")
    assert [p.astimezone(UTC) for p in planned] == [e.astimezone(UTC) for e in expected], source


@pytest.mark.parametrize(
    ("cron", "words"),
    [
        ("30 1 * * 7", "runs to 6 (Sunday is 0)"),  # cron(8) takes 7 for Sunday; a CronJob does not
        ("0 0 * * 1-7", "runs to 6"),
        ("0 0 L * *", "cannot hold 'L'"),
        ("0 0 * * 5#3", "cannot hold '5#3'"),
        ("0 0 * * * *", "five fields"),
    ],
)
def test_what_a_cronjob_would_refuse_is_refused_up_front(cron: str, words: str) -> None:
    with pytest.raises(ValidationError, match=words.replace("(", r"\(").replace(")", r"\)")):
        ScheduleSpec(cron=cron)
