"""Waiting for something that happens in another process: poll until true, fail after a generous bound.

The bound only keeps a broken test from hanging; it measures nothing (speed is for benchmarks/)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll `check` until it returns something true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (KeyError, IndexError, TypeError):
            last = None
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what} not met in {timeout} s (last: {last!r})")


def wait_for_event(events: Callable[[], list[tuple[str, str]]], event: tuple[str, str]) -> None:
    """Wait until `event` (type, reason) is among `events()`. Kopf posts Events from a queue of its
    own, after the write that caused them: an Event may come later than one posted before it, and
    later than the status it tells of."""
    wait_for(lambda: event in events(), what=f"the Event {event}")
