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
NOW_ENV = "KUBECLASSIFY_TEST_NOW"  # an instant (ISO 8601, with its offset): a process's clock starts there
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


def set_to(now: dt.datetime) -> dict[str, str]:
    """The environment under which a Python process the test starts lives from `now` on (its clock
    then runs as usual): the chaos tier's operator, moved over a missed week and a DST change."""
    path = os.environ.get("PYTHONPATH", "")
    return {NOW_ENV: now.isoformat(), "PYTHONPATH": os.pathsep.join(p for p in (str(SITE), path) if p)}


def follow_environment() -> None:
    """Move this process's clock as `KUBECLASSIFY_TEST_DAYS_AHEAD` (or `KUBECLASSIFY_TEST_NOW`) says,
    once, and have the Python processes it starts do the same. Nothing happens when neither is set."""
    global _moved
    days = days_ahead()
    now = os.environ.get(NOW_ENV, "").strip()
    if _moved or not (days or now):
        return
    import time_machine

    destination = dt.datetime.fromisoformat(now) if now else dt.timedelta(days=days)
    time_machine.travel(destination, tick=True).start()
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
