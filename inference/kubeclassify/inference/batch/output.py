"""Results: one row per input image, written as per-shard parts and published once.

A shard writes its part atomically when it finishes (a killed shard leaves nothing half-written,
and a rerun replaces its part). The shard that then finds every part present merges them in input
order into the single results object and writes `_SUCCESS`, both create-only: when shards race,
one publishes and the others find it done. A reader sees no results object before it is whole.

A replacing run (`run` set: one date classified again on request) keeps its parts apart under
`_runs/<run>/`; its own create-only marker there decides which shard publishes, and that shard
replaces the results object and `_SUCCESS` (each write atomic).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import heapq
import io
import json
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from kubeclassify.core import constants as c
from kubeclassify.core.resources import BatchCounts
from kubeclassify.core.sources import OUTPUT_COLUMNS
from kubeclassify.core.storage import AlreadyExists, ObjectNotFound, ObjectStore, join

COLUMNS = list(OUTPUT_COLUMNS)


def escape_cell(value: str) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""
    return "'" + value if value.startswith(c.FORMULA_START) else value


@dataclass(frozen=True)
class Layout:
    """Where a batch's results, parts and _SUCCESS live, from the output URI."""

    output: str
    shards: int
    run: str | None = None  # a replacing run's id

    @property
    def folder(self) -> str:
        return self.output.rsplit("/", 1)[0]

    @property
    def success(self) -> str:
        return join(self.folder, "_SUCCESS")

    @property
    def run_marker(self) -> str:
        """A replacing run's own marker: whoever creates it publishes."""
        return join(self.folder, "_runs", self.run or "", "_PUBLISHED")

    def part(self, shard: int) -> str:
        name = self.output.rsplit("/", 1)[1]
        base = join(self.folder, "_runs", self.run, "_parts") if self.run else join(self.folder, "_parts")
        return join(base, f"{name}.part-{shard:05d}-of-{self.shards:05d}.jsonl")

    def part_summary(self, shard: int) -> str:
        return self.part(shard).removesuffix(".jsonl") + ".summary.json"


class PartWriter:
    """Rows of one shard, kept in a local temporary file and uploaded whole at the end."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115  (lives until upload)

    def write(self, seq: int, row: dict[str, Any]) -> None:
        self._file.write(json.dumps({"seq": seq, "row": row}, ensure_ascii=False).encode() + b"\n")

    def upload(self, store: ObjectStore, uri: str) -> None:
        self._file.flush()
        self._file.seek(0)
        store.write(uri, self._file, content_type="application/x-ndjson")
        self._file.close()


def _part_rows(store: ObjectStore, uri: str) -> Iterator[tuple[int, dict[str, Any]]]:
    with store.open(uri) as f:
        for line in f:
            entry = json.loads(line)
            yield entry["seq"], entry["row"]


def render(rows: Iterable[dict[str, Any]], fmt: str, extra: list[str], out: IO[bytes]) -> int:
    """Write rows as CSV (formula cells escaped) or JSON Lines; returns the row count."""
    n = 0
    if fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False).encode() + b"\n")
            n += 1
        return n
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text)
    writer.writerow(COLUMNS + extra)
    for row in rows:
        cells = [row.get(c, "") for c in COLUMNS + extra]
        writer.writerow([escape_cell(c) if isinstance(c, str) else c for c in cells])
        n += 1
    text.detach()
    return n


def publish_if_complete(
    store: ObjectStore, layout: Layout, fmt: str, extra: list[str], manifest: dict[str, Any]
) -> bool:
    """Merge every part into the results object and write _SUCCESS, once; False if parts are missing.

    A replacing run replaces both, once: the shard that creates the run's marker does it."""
    parts = [layout.part(i) for i in range(layout.shards)]
    if not all(store.exists(p) for p in parts):
        return False
    if layout.run is not None:
        try:
            store.create(layout.run_marker, b"", content_type="text/plain")
        except AlreadyExists:
            return True  # another shard of this run publishes
    counts = BatchCounts()
    for i in range(layout.shards):
        counts.add(BatchCounts.read(json.loads(store.read(layout.part_summary(i)))["counts"]))
    merged = heapq.merge(*(_part_rows(store, p) for p in parts), key=lambda entry: entry[0])
    with tempfile.TemporaryFile() as tmp:
        rows = render((row for _, row in merged), fmt, extra, tmp)
        tmp.seek(0)
        content_type = "text/csv" if fmt == "csv" else "application/x-ndjson"
        if layout.run is not None:
            store.write(layout.output, tmp, content_type=content_type)
        else:
            with contextlib.suppress(AlreadyExists):  # another shard published it first
                store.create(layout.output, tmp, content_type=content_type)
    success = {
        **manifest,
        "output": layout.output,
        "rows": rows,
        "counts": counts.model_dump(),
        "published": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    body = json.dumps({**success, **({"run": layout.run} if layout.run else {})}, indent=1).encode()
    if layout.run is not None:
        store.write(layout.success, body, content_type="application/json")
    else:
        with contextlib.suppress(AlreadyExists):
            store.create(layout.success, body, content_type="application/json")
    return True


def published(store: ObjectStore, layout: Layout) -> dict[str, Any] | None:
    """The _SUCCESS manifest if this output is already published."""
    try:
        return json.loads(store.read(layout.success))
    except ObjectNotFound:
        return None
