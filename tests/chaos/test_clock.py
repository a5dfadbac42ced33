"""The operator's clock moved, not slept through: a daily batch in America/New_York whose cron time
(02:30) does not exist on the day the clocks spring forward (2027-03-14) runs its first dates, then
the operator is away for a week across that change and comes back at 00:30 local time, an hour that
a fixed UTC offset would put on the day before. Every due date is processed once, in order, and none
that is not yet due: the dates come from the schedule's time zone as it is on each day.

The operator process lives at the instants the test gives it (`harness.clock.set_to`); the batch
worker, the API emulator and S3 keep the real time, which they only use for timestamps."""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from chaos.conftest import PER_DAY, World
from harness.kubelet import CB, Kubelet
from harness.wait import wait_for

from kubeclassify.core import constants as c

ZONE = ZoneInfo("America/New_York")
START = dt.date(2027, 3, 8)
DAYS = [START + dt.timedelta(days=n) for n in range(14)]  # the manifest: 03-08 to 03-21
# First: 2027-03-11 02:30 EST, yesterday 03-10. Back a week later at 2027-03-18 00:30 EDT (04:30 UTC,
# which is 23:30 on 03-17 at the winter offset): yesterday is 03-17, not 03-16.
FIRST = dt.datetime(2027, 3, 11, 2, 30, tzinfo=ZONE)
BACK = dt.datetime(2027, 3, 18, 0, 30, tzinfo=ZONE)


@pytest.mark.timeout(600)
def test_a_missed_week_across_a_dst_change_runs_each_due_date_once_in_order(
    world: World,
    tmp_path: Path,
    report: Callable[[str], None],
) -> None:
    assert BACK.utcoffset() != FIRST.utcoffset(), "the week crosses the change"
    cluster, store, bucket = world.cluster, world.store, world.bucket
    kubelet = Kubelet(cluster, tmp_path / "pods")

    def status() -> dict[str, Any]:
        return cluster.status("dst")

    def tick() -> None:  # what the CronJob's pod stamps
        cluster.annotate("dst", c.ANNOTATION_TICK, str(time.time()))

    def jobs() -> list[str]:
        return sorted(j["metadata"]["name"] for j in cluster.jobs())

    operator = world.start_operator(tmp_path / "first", now=FIRST)
    try:
        world.stage(DAYS)
        schedule = {"cron": "30 2 * * *", "timeZone": str(ZONE), "startDate": str(START), "catchUp": True}
        cluster.create(CB, world.batch("dst", schedule=schedule))
        wait_for(lambda: status().get("phase") == "Scheduled", what="Scheduled")
        tick()
        wait_for(lambda: status().get("lastProcessedDate") == "2027-03-10", timeout=120, what="up to 03-10")
        wait_for(lambda: status().get("phase") == "Scheduled", what="the first dates done")
        assert status()["nextDate"] == "2027-03-11"
    finally:
        operator.process.stop()

    operator = world.start_operator(tmp_path / "back", now=BACK)
    try:
        tick()
        wait_for(lambda: status().get("lastProcessedDate") == "2027-03-17", timeout=240, what="up to 03-17")
        tick()  # nothing more is due: 03-18 is today there
        time.sleep(3)
        done = status()
        assert (done["phase"], done["lastProcessedDate"], done["nextDate"]) == (
            "Scheduled",
            "2027-03-17",
            "2027-03-18",
        )
        due = [d for d in DAYS if d <= dt.date(2027, 3, 17)]
        assert jobs() == sorted(f"dst-{d:%Y%m%d}" for d in due), "a Job per due date, none twice"
        runs = done["recentRuns"]  # the last seven, in the order they ran
        assert [r["date"] for r in runs] == [str(d) for d in due[-len(runs) :]]
        assert all(r["phase"] == "Succeeded" and r["counts"]["total"] == PER_DAY for r in runs)
        for d in due:
            out = store.read(f"s3://{bucket}/results/dst/{d}/predictions.csv").decode()
            assert len(list(csv.DictReader(io.StringIO(out)))) == PER_DAY, d
        assert kubelet.errors == []
        report(f"clock: {FIRST.isoformat()} -> {BACK.isoformat()}, {len(due)} dates, {len(kubelet.ran)} Jobs")
    finally:
        kubelet.stop()
        operator.process.stop()
