"""The progress line a batch shard writes while it runs, and its reader.

A running shard writes one every few seconds to its log (stderr), as one JSON object whatever the
log format. The operator reads the last one from each running pod's log (`pods/log`) into its
batch's status: the pods need no API token, and a pod's log speaks only for that pod's own shard,
as its termination message does at the end.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import asdict, dataclass

MESSAGE = "progress"
LOGGER = "kubeclassify.progress"


@dataclass(frozen=True)
class ShardProgress:
    """How far one shard is: images done (classified or failed), failed, and its total once counted."""

    shard: int
    done: int
    failed: int
    total: int | None  # None until the shard has counted its input (counted alongside the work)
    images_per_second: float

    def line(self, now: dt.datetime) -> str:
        """The log line: shaped like the JSON log lines, so it reads as one of them."""
        entry = {
            "time": now.isoformat(timespec="milliseconds"),
            "level": "INFO",
            "logger": LOGGER,
            "message": MESSAGE,
            **asdict(self),
        }
        return json.dumps(entry)


def last_progress(log: str) -> ShardProgress | None:
    """The last well-formed progress line of a log (its tail), or None."""
    for line in reversed(log.splitlines()):
        if MESSAGE not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("message") != MESSAGE or entry.get("logger") != LOGGER:
            continue
        try:
            progress = ShardProgress(
                shard=int(entry["shard"]),
                done=int(entry["done"]),
                failed=int(entry["failed"]),
                total=None if entry.get("total") is None else int(entry["total"]),
                images_per_second=float(entry["images_per_second"]),
            )
        except (KeyError, TypeError, ValueError):
            continue
        numbers = (progress.shard, progress.done, progress.failed, progress.total or 0)
        if (
            min(numbers) < 0
            or not math.isfinite(progress.images_per_second)
            or progress.images_per_second < 0
        ):
            continue
        return progress
    return None


def duration_text(seconds: float) -> str:
    """A short duration for people: 45s, 4m10s, 2h05m."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
