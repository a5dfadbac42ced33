"""The moved clock that `make test` runs the `calendar` tests under (`harness.clock`): this test
process and the Python processes it starts read the same moved time, and S3 still answers."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest
import time_machine
from harness import clock

from kubeclassify.core.storage import ObjectStore


def real_now() -> dt.datetime:
    if time_machine.escape_hatch.is_travelling():
        return time_machine.escape_hatch.datetime.datetime.now(dt.UTC)
    return dt.datetime.now(dt.UTC)


@pytest.mark.calendar
def test_every_process_of_the_run_reads_the_runs_clock(store: ObjectStore, bucket: str) -> None:
    expected = real_now() + dt.timedelta(days=clock.days_ahead())
    child = subprocess.run(
        [sys.executable, "-c", "import datetime as d; print(d.datetime.now(d.UTC).isoformat())"],
        capture_output=True,
        text=True,
        check=True,
    )
    # An hour's leeway tells a moved clock (365 days in `make test`) from the real one.
    for seen in (dt.datetime.now(dt.UTC), dt.datetime.fromisoformat(child.stdout.strip())):
        assert abs(seen - expected) < dt.timedelta(hours=1), (seen, expected)

    # SeaweedFS keeps the real time: requests signed with a moved one would be refused.
    store.write(f"s3://{bucket}/clock.txt", b"now")
    assert store.read(f"s3://{bucket}/clock.txt") == b"now"
