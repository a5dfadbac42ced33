"""Output for people: tables, and a progress bar that is a live line in a terminal and a plain line
per change elsewhere (a log, CI).

Written here rather than with rich (weighed for this): off a terminal, rich wraps a table to 80
columns unless told its width, overflow and wrapping column by column, and pads the last column;
and its progress bar prints nothing per change off a terminal, where this one logs a line. Keeping
one row per line for scripts and a line per change for CI would take as much code as this module."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from kubeclassify.core.resources.classification_batch import ENDED_PHASES


def table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], out: TextIO = sys.stdout, indent: str = ""
) -> None:
    """Rows as aligned columns under a header."""
    cells = [["" if row.get(c) is None else str(row[c]) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    for line in [[c.upper() for c in columns], *cells]:
        print(indent + "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip(), file=out)


def batch_progress(out: TextIO = sys.stderr) -> Callable[[dict[str, Any]], None]:
    """A callback that shows a gateway batch's progress (its `state` and `counts`)."""
    last: list[str] = []
    live = out.isatty()

    def show(info: dict[str, Any]) -> None:
        counts = info["counts"]
        done, total = counts["classified"] + counts["failed"], counts["total"]
        width = 30
        filled = int(width * done / total) if total else 0
        line = f"{info['name']}: {info['state']:<9} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
        if counts["failed"]:
            line += f", {counts['failed']} failed"
        if live:
            end = "\n" if info["state"] in ENDED_PHASES else ""
            out.write(f"\r{line}{end}")
            out.flush()
        elif not last or last[-1] != line:
            print(line, file=out)
        last[:] = [line]

    return show
