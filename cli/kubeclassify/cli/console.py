"""Output for people: tables, and a progress bar that is a live line in a terminal and a plain line
per change elsewhere (a log, CI).

Written here rather than with rich (weighed for this): off a terminal, rich wraps a table to 80
columns unless told its width, overflow and wrapping column by column, and pads the last column;
and its progress bar prints nothing per change off a terminal, where this one logs a line. Keeping
one row per line for scripts and a line per change for CI would take as much code as this module."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from kubeclassify.core.progress import duration_text
from kubeclassify.core.resources.classification_batch import ENDED_PHASES


def table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], out: TextIO = sys.stdout, indent: str = ""
) -> None:
    """Rows as aligned columns under a header."""
    cells = [["" if row.get(c) is None else str(row[c]) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    for line in [[c.upper() for c in columns], *cells]:
        print(indent + "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip(), file=out)


def when(value: str | None) -> str:
    """An RFC 3339 time as people read it, to the minute in UTC: 2026-12-06 15:40."""
    if not value:
        return ""
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M")


def batch_progress(
    out: TextIO = sys.stderr, now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
) -> Callable[[dict[str, Any]], None]:
    """A callback that shows a batch's progress: its `state`, its `counts`, and while it runs its
    speed and the time it still needs (`images_per_second`, `estimated_completion_time`)."""
    last: list[str] = []
    live = out.isatty()

    def show(info: dict[str, Any]) -> None:
        counts = info["counts"]
        done, total = counts["classified"] + counts["failed"], counts["total"]
        width = 30
        filled = min(int(width * done / total), width) if total else 0
        line = f"{info['name']}: {info['state']:<9} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
        if counts["failed"]:
            line += f", {counts['failed']} failed"
        rate, eta = info.get("images_per_second"), info.get("estimated_completion_time")
        if info["state"] not in ENDED_PHASES and rate:
            line += f", {rate:.1f} images/s"
            if eta:
                left = max((dt.datetime.fromisoformat(eta) - now()).total_seconds(), 0)
                line += f", {duration_text(left)} left"
        if live:
            end = "\n" if info["state"] in ENDED_PHASES else ""
            out.write(f"\r{line}{end}")
            out.flush()
        elif not last or last[-1] != line:
            print(line, file=out)
        last[:] = [line]

    return show
