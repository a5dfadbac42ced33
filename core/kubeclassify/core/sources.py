"""The images a ClassificationBatch names (a manifest filtered by date, a prefix, or a CSV of
URLs), for the batch worker and the gateway. Inputs are streamed (a manifest is never loaded whole;
a prefix is listed page by page) and checked before any work: missing columns or an empty file are
errors that name what is wrong.

Every item carries its position in the whole input, so shards (a stable hash of the item's key
picks one) write parts that merge back into the same order whatever the number of shards.
"""

from __future__ import annotations

import csv
import datetime as dt
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from kubeclassify.core.resources import ClassificationBatchSpec
from kubeclassify.core.storage import ObjectStore, join


class InputError(ValueError):
    """The batch's input cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class Item:
    """One image to classify."""

    seq: int  # position in the whole input, for a stable order across shards
    source: str  # an s3:// or file:// URI, or an http(s) URL
    date: str = ""
    extra: dict[str, str] = field(default_factory=dict)  # manifest columns carried to the output


def shard_of(source: str, shards: int) -> int:
    """The shard an item belongs to: stable, and the same in every process."""
    return zlib.crc32(source.encode()) % shards


OUTPUT_COLUMNS = (
    "id",
    "source",
    "date",
    "label",
    "score",
    "top_k",
    "model_name",
    "model_version",
    "error",
    "time",
)


def carried(column: str) -> str:
    """The output name of a carried input column: `input_<name>` where it would clash with ours."""
    return f"input_{column}" if column in OUTPUT_COLUMNS else column


def extra_columns(spec: ClassificationBatchSpec, store: ObjectStore) -> list[str]:
    """The input columns carried to the output, in the manifest's order."""
    if spec.input.manifest is None:
        return []
    m = spec.input.manifest
    with store.open_text(m.uri) as f:
        header = next(csv.reader(f), [])
    return [carried(c) for c in header if c not in (m.path_column, m.date_column)]


def items(spec: ClassificationBatchSpec, store: ObjectStore, date: dt.date | None) -> Iterator[Item]:
    """Every image of the batch for `date` (or all when None), in input order."""
    if spec.input.manifest is not None:
        yield from _manifest(spec, store, date)
    elif spec.input.prefix is not None:
        yield from _prefix(spec, store, date)
    elif spec.input.urls is not None:
        yield from _urls(spec, store)


def _reader(uri: str, store: ObjectStore, required: list[str]) -> Iterator[dict[str, str]]:
    with store.open_text(uri) as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames
        if not columns:
            raise InputError(f"{uri} is empty: expected a header row with {', '.join(map(repr, required))}")
        missing = [c for c in required if c not in columns]
        if missing:
            raise InputError(
                f"{uri} has no column {', '.join(map(repr, missing))}; its columns are: "
                + ", ".join(map(repr, columns))
            )
        yield from reader


def _manifest(spec: ClassificationBatchSpec, store: ObjectStore, date: dt.date | None) -> Iterator[Item]:
    m = spec.input.manifest
    assert m is not None
    root = m.root or m.uri.rsplit("/", 1)[0]
    required = [m.path_column] + ([m.date_column] if date is not None else [])
    target = date.isoformat() if date is not None else None
    for seq, row in enumerate(_reader(m.uri, store, required)):
        row_date = (row.get(m.date_column) or "").strip()
        if target is not None and row_date != target:
            continue
        path = (row.get(m.path_column) or "").strip()
        source = path if "://" in path else join(root, path) if path else ""
        extra = {
            carried(k): v for k, v in row.items() if k not in (m.path_column, m.date_column) and k is not None
        }
        yield Item(seq, source, row_date, extra)


def _prefix(spec: ClassificationBatchSpec, store: ObjectStore, date: dt.date | None) -> Iterator[Item]:
    p = spec.input.prefix
    assert p is not None
    prefix = p.uri.format(date=date.isoformat()) if date is not None else p.uri
    extensions = tuple(e.lower() for e in p.extensions)
    for seq, obj in enumerate(store.iter_objects(prefix)):
        if PurePosixPath(obj.uri).suffix.lower() in extensions:
            yield Item(seq, obj.uri, date.isoformat() if date else "")


def _urls(spec: ClassificationBatchSpec, store: ObjectStore) -> Iterator[Item]:
    u = spec.input.urls
    assert u is not None
    for seq, row in enumerate(_reader(u.uri, store, [u.column])):
        yield Item(seq, (row.get(u.column) or "").strip())
