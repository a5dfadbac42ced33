"""The tests' moved clock: with `KUBECLASSIFY_TEST_DAYS_AHEAD=N` every Python process of a test run
(pytest itself, and the gateway, operator, worker, predictor and emulator it starts) lives N days in
the future, so a test whose dates are fixed while the code reads the wall clock fails today, not on
the day the calendar catches up with it. `make test` runs the tests marked `calendar` once more a
year ahead.

How: time-machine moves `time.time()`, `datetime.now()`, `date.today()`... of this process (not the
monotonic clocks, which asyncio and timeouts use), and `site/sitecustomize.py`, put on PYTHONPATH for
the processes the tests start, does the same in each of them. The one part whose clock cannot move is
SeaweedFS (a Go program, no Python): it refuses S3 requests signed a year off, so S3 requests keep
being signed with the real time, as a client whose clock is right would sign them.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

ENV = "KUBECLASSIFY_TEST_DAYS_AHEAD"
SITE = Path(__file__).resolve().parent / "site"

_moved = False


def days_ahead() -> int:
    """How many days ahead this run's clock is (0: the real clock)."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return 0
    if not value.isdigit():
        raise SystemExit(f"{ENV}={value!r}: give a whole number of days, e.g. 365")
    return int(value)


def follow_environment() -> None:
    """Move this process's clock as `KUBECLASSIFY_TEST_DAYS_AHEAD` says, once, and have the Python
    processes it starts do the same. Nothing happens when the variable is unset or 0."""
    global _moved
    days = days_ahead()
    if _moved or not days:
        return
    import time_machine

    time_machine.travel(dt.timedelta(days=days), tick=True).start()
    _sign_s3_with_the_real_time()
    path = os.environ.get("PYTHONPATH", "")
    if str(SITE) not in path.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(SITE), path) if p)
    _moved = True


def _sign_s3_with_the_real_time() -> None:
    """botocore takes the signing time from `botocore.compat.get_current_datetime`, bound by name
    where it is imported: replace it in each of those modules."""
    import botocore.auth
    import botocore.compat
    import botocore.signers
    import botocore.utils
    from time_machine import escape_hatch

    def real_now(remove_tzinfo: bool = True) -> dt.datetime:
        now: dt.datetime = escape_hatch.datetime.datetime.now(dt.UTC)
        return now.replace(tzinfo=None) if remove_tzinfo else now

    for module in (botocore.compat, botocore.auth, botocore.signers, botocore.utils):
        module.get_current_datetime = real_now  # type: ignore[attr-defined]
