"""Results as CSV, read and written by the csv module a piece at a time: no object is held whole,
and a quoted cell may hold a newline. A schedule's runs come out as one CSV, their rows under the
first results' header by column name (a column a later run lacks is left empty; one only it has is
left out); a batch's rows may be kept to those with one label."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from typing import IO

from kubeclassify.core.storage import ObjectNotFound, ObjectStore

ROWS_PER_CHUNK = 500

Keep = Callable[[dict[str, str]], bool]


def with_label(label: str | None) -> Keep | None:
    """Keep the rows whose top label is `label` (every row when None)."""
    return None if label is None else lambda row: row.get("label") == label


def merged_csv(store: ObjectStore, uris: Iterable[str], keep: Keep | None = None) -> Iterator[bytes]:
    """The rows of each CSV in `uris`, in order, under one header; a missing object is skipped (a
    run's results replaced meanwhile). Blocking: a StreamingResponse runs it on a worker thread."""

    def opened() -> Iterator[IO[str]]:
        for uri in uris:
            try:
                yield store.open_text(uri)
            except ObjectNotFound:
                continue

    return rows_csv(opened(), keep)


def rows_csv(sources: Iterable[IO[str]], keep: Keep | None = None) -> Iterator[bytes]:
    """The rows of each open CSV (closed when read) that `keep` keeps, under the first one's header."""
    buffer = io.StringIO()
    writer: csv.DictWriter[str] | None = None
    for source in sources:
        with source:
            reader = csv.DictReader(source)
            if reader.fieldnames is None:  # an empty object: no header, no rows
                continue
            if writer is None:
                writer = csv.DictWriter(buffer, reader.fieldnames, restval="", extrasaction="ignore")
                writer.writeheader()
            for n, row in enumerate(reader, 1):
                if keep is None or keep(row):
                    writer.writerow(row)
                if n % ROWS_PER_CHUNK == 0 and buffer.tell():
                    yield _take(buffer)
        if buffer.tell():
            yield _take(buffer)


def _take(buffer: io.StringIO) -> bytes:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text.encode()
