"""What the CLI prints for people: a batch's progress line (with its speed and the time it still
needs while it runs) and times."""

from __future__ import annotations

import datetime as dt
import io

import pytest

from kubeclassify.cli.console import batch_progress, when
from kubeclassify.core.resources import BatchCounts
from kubeclassify.gateway.batches import BatchRecord, progressed

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 12, 6, 15, 0, tzinfo=dt.UTC)


def info(state: str, done: int, rate: float | None, eta: str | None) -> dict[str, object]:
    counts = {"total": 100, "classified": done, "failed": 0}
    return {"name": "alice-1", "state": state, "counts": counts, "images_per_second": rate,
            "estimated_completion_time": eta}  # fmt: skip


def test_a_running_batch_shows_its_speed_and_the_time_left_and_an_ended_one_does_not() -> None:
    out = io.StringIO()
    show = batch_progress(out, now=lambda: NOW)
    show(info("Running", 40, 12.5, "2026-12-06T15:04:10Z"))
    show(info("Running", 40, 12.5, "2026-12-06T15:04:10Z"))  # no change: no second line off a terminal
    show(info("Succeeded", 100, None, None))
    first, last = out.getvalue().splitlines()
    assert first.endswith("40/100, 12.5 images/s, 4m10s left"), first
    assert last.endswith("100/100"), last


def test_times_are_shown_to_the_minute_in_utc() -> None:
    assert when("2026-12-06T16:40:59+01:00") == "2026-12-06 15:40"
    assert when(None) == ""


def test_a_running_batch_record_follows_its_runs_report() -> None:
    record = BatchRecord(
        name="alice-1", owner="alice", model="digits", column="url", input_uri="", output_uri="",
        counts=BatchCounts(total=100), reserved=100, state="Running",
    )  # fmt: skip
    reported = BatchCounts(total=0, classified=30, failed=10)  # the total it was paid for stays
    assert progressed(record, reported, 8.0, now=1000.0)
    assert record.counts == BatchCounts(total=100, classified=30, failed=10)
    assert (record.images_per_second, record.estimated_completion_time) == (
        8.0,
        1008,
    )  # 60 left at 8/s, to the second
    assert not progressed(record, reported, 8.0, now=1000.0)  # nothing new: nothing to write
    assert progressed(record, reported, 0.0, now=1001.0)  # no speed yet: no estimate
    assert record.estimated_completion_time is None and record.images_per_second is None
