"""Every run's results of a schedule as one CSV, read and written by the csv module a piece at a
time: no object is held whole, a quoted cell may hold a newline, and rows go under the first
results' header by column name (a column a later run lacks is left empty; one only it has is left
out)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

from kubeclassify.core.storage import ObjectNotFound, ObjectStore

ROWS_PER_CHUNK = 500


def merged_csv(store: ObjectStore, uris: Iterable[str]) -> Iterator[bytes]:
    """The rows of each CSV in `uris`, in order, under one header; a missing object is skipped (a
    run's results replaced meanwhile). Blocking: a StreamingResponse runs it on a worker thread."""
    buffer = io.StringIO()
    writer: csv.DictWriter[str] | None = None
    for uri in uris:
        try:
            source = store.open_text(uri)
        except ObjectNotFound:
            continue
        with source:
            reader = csv.DictReader(source)
            if reader.fieldnames is None:  # an empty object: no header, no rows
                continue
            if writer is None:
                writer = csv.DictWriter(buffer, reader.fieldnames, restval="", extrasaction="ignore")
                writer.writeheader()
            for n, row in enumerate(reader, 1):
                writer.writerow(row)
                if n % ROWS_PER_CHUNK == 0:
                    yield _take(buffer)
        if buffer.tell():
            yield _take(buffer)


def _take(buffer: io.StringIO) -> bytes:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text.encode()
