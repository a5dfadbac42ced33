"""The images a ClassificationBatch names (a manifest filtered by date, a prefix, or a CSV of
URLs), for the batch worker and the gateway. Inputs are streamed (a manifest is never loaded whole;
a prefix is listed page by page) and checked before any work: missing columns or an empty file are
errors that name what is wrong.

Every CSV, whether the gateway checks it or the worker reads it, goes through `read_table`: a header
with a name twice or a name padded with spaces is refused, so the column one reader checks is the
column the other reads. A gateway batch's images are resolved by `owner_source`: an http(s) URL, or
a path that stays under the owner's own prefix; the worker applies it again to every row, whatever
the gateway let through.

Every item carries its position in the whole input, so shards (a stable hash of the item's key
picks one) write parts that merge back into the same order whatever the number of shards.
"""

from __future__ import annotations

import csv
import datetime as dt
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import IO
from urllib.parse import unquote, urlsplit

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
    refused: str = ""  # why this row names nothing the batch may read (an error row, nothing fetched)


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


@dataclass
class Table:
    """A CSV's column names and its rows: (line number, cells by column name) for each row."""

    columns: list[str]
    rows: Iterator[tuple[int, dict[str, str]]]


def read_table(f: IO[str], where: str, required: Sequence[str] = ()) -> Table:
    """The CSV in `f` (named `where` in errors), its header checked before any row is read.

    Refused: no header, a column named twice, a name with spaces around it, a `required` column
    missing. A column without a name (a spreadsheet's index) is ignored. Short rows read as empty
    cells; cells beyond the header belong to no column and are not read.
    """
    reader = csv.reader(f)
    header = next(reader, None)
    if not header or not any(header):
        wanted = f": expected a header row with {', '.join(map(repr, required))}" if required else ""
        raise InputError(f"{where} is empty{wanted}")
    seen: set[str] = set()
    for name in header:
        if name != name.strip():
            raise InputError(f"{where}: the column name {name!r} has spaces around it; remove them")
        if name and name in seen:
            raise InputError(f"{where}: the column {name!r} appears twice; name each column once")
        seen.add(name)
    missing = [c for c in required if c not in seen]
    if missing:
        raise InputError(
            f"{where} has no column {', '.join(map(repr, missing))}; its columns are: "
            + ", ".join(repr(c) for c in header if c)
        )
    named = [(i, name) for i, name in enumerate(header) if name]

    def rows() -> Iterator[tuple[int, dict[str, str]]]:
        for row in reader:
            yield reader.line_num, {name: row[i] if i < len(row) else "" for i, name in named}

    return Table([name for _, name in named], rows())


def owner_prefix(images_uri: str, owner: str) -> str:
    """Where a gateway user's images live (`<images_uri>/<owner>/<uid>.<ext>`): the only objects a
    batch of theirs may read by path."""
    return join(images_uri, owner) + "/"


def owner_source(prefix: str, value: str) -> str:
    """The image a gateway batch's row names: an http(s) URL as it is, or a path resolved under the
    owner's `prefix`. InputError for anything else: another scheme, an absolute path, a `..` or an
    empty segment, a backslash or a control character, as written or percent-decoded."""
    if value.startswith(("http://", "https://")):
        if not urlsplit(value).hostname:
            raise InputError(f"{value[:80]!r} is not a URL with a host")
        return value
    decoded = unquote(value)
    segments = decoded.split("/")
    if (
        not value
        or ":" in segments[0]
        or any(s in ("", ".", "..") for s in segments)
        or "\\" in decoded
        or any(ord(ch) < 32 or ord(ch) == 127 for ch in decoded)
    ):
        raise InputError(
            f"{value[:80]!r} is outside your images: give an http(s) URL or a path relative to your images"
        )
    return join(prefix, value)


def extra_columns(spec: ClassificationBatchSpec, store: ObjectStore) -> list[str]:
    """The input columns carried to the output, in the input CSV's order."""
    used: tuple[str, ...]
    if (m := spec.input.manifest) is not None:
        uri, used = m.uri, (m.path_column, m.date_column)
    elif (u := spec.input.urls) is not None:
        uri, used = u.uri, (u.column,)
    else:
        return []
    with store.open_text(uri) as f:
        columns = read_table(f, uri).columns
    return [carried(c) for c in columns if c not in used]


def items(
    spec: ClassificationBatchSpec, store: ObjectStore, date: dt.date | None, owner_prefix: str | None = None
) -> Iterator[Item]:
    """Every image of the batch for `date` (or all when None), in input order. With `owner_prefix`
    (a gateway batch), each row of a `urls` CSV must name an http(s) URL or a path under it."""
    if spec.input.manifest is not None:
        yield from _manifest(spec, store, date)
    elif spec.input.prefix is not None:
        yield from _prefix(spec, store, date)
    elif spec.input.urls is not None:
        yield from _urls(spec, store, owner_prefix)


def _reader(uri: str, store: ObjectStore, required: list[str]) -> Iterator[dict[str, str]]:
    with store.open_text(uri) as f:
        for _, row in read_table(f, uri, required).rows:
            yield row


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
        extra = {carried(k): v for k, v in row.items() if k not in (m.path_column, m.date_column)}
        yield Item(seq, source, row_date, extra)


def _prefix(spec: ClassificationBatchSpec, store: ObjectStore, date: dt.date | None) -> Iterator[Item]:
    p = spec.input.prefix
    assert p is not None
    prefix = p.uri.format(date=date.isoformat()) if date is not None else p.uri
    extensions = tuple(e.lower() for e in p.extensions)
    for seq, obj in enumerate(store.iter_objects(prefix)):
        if PurePosixPath(obj.uri).suffix.lower() in extensions:
            yield Item(seq, obj.uri, date.isoformat() if date else "")


def _urls(spec: ClassificationBatchSpec, store: ObjectStore, owner_prefix: str | None) -> Iterator[Item]:
    u = spec.input.urls
    assert u is not None
    for seq, row in enumerate(_reader(u.uri, store, [u.column])):
        value = row[u.column].strip()
        extra = {carried(k): v for k, v in row.items() if k != u.column}
        if owner_prefix is None:
            yield Item(seq, value, extra=extra)
            continue
        try:
            yield Item(seq, owner_source(owner_prefix, value), extra=extra)
        except InputError as e:
            yield Item(seq, value, extra=extra, refused=str(e))
