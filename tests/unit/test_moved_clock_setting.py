"""`KUBECLASSIFY_TEST_DAYS_AHEAD`, the moved clock's setting (`harness.clock`): what it accepts."""

from __future__ import annotations

import pytest
from harness import clock


@pytest.mark.parametrize(("value", "days"), [("", 0), ("0", 0), ("365", 365), (" 7 ", 7)])
def test_days_ahead_reads_whole_days(monkeypatch: pytest.MonkeyPatch, value: str, days: int) -> None:
    monkeypatch.setenv(clock.ENV, value)
    assert clock.days_ahead() == days


@pytest.mark.parametrize("value", ["-1", "1y", "1.5", "a year"])
def test_anything_else_stops_the_run_with_the_setting_named(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(clock.ENV, value)
    with pytest.raises(SystemExit, match=f"{clock.ENV}=.*whole number of days"):
        clock.days_ahead()
