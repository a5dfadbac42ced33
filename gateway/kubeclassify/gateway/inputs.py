"""What starts a batch, checked before anything is stored or paid: an uploaded CSV (text, one
known column, rows, no formulas), the images a date of the manifest lists, a webhook URL."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, UploadFile

from kubeclassify.core import constants as c
from kubeclassify.core.fetch import FetchError, FetchPolicy, target
from kubeclassify.core.resources.classification_batch import ClassificationBatchSpec, ManifestInput
from kubeclassify.core.sources import InputError, items, owner_source, read_table

COLUMNS = ("url", "path")


class CsvError(ValueError):
    """The CSV cannot start a batch; the message says why, naming the row or column."""


@dataclass(frozen=True)
class CheckedCsv:
    column: str  # url or path
    rows: int
    data: bytes  # the CSV to store: header and rows as they came


def check_csv(data: bytes, max_rows: int) -> CheckedCsv:
    """Check an uploaded batch CSV before anything starts: text, one known column, rows, no formulas.

    It is read by `core`'s reader, the one the batch worker reads it with, and each image is
    resolved as the worker resolves it (`owner_source`), so what passes here is what is read there.
    """
    if b"\x00" in data:
        raise CsvError("this is not a CSV: it has binary content")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CsvError(f"this is not a UTF-8 CSV (byte {e.start})") from e
    try:
        table = read_table(io.StringIO(text, newline=""), "the CSV")
    except InputError as e:
        if "is empty" in str(e):
            raise CsvError(
                f"the CSV needs exactly one of the columns {' or '.join(COLUMNS)}; it has none"
            ) from e
        raise CsvError(str(e)) from e
    found = [c for c in COLUMNS if c in table.columns]
    if len(found) != 1:
        raise CsvError(
            f"the CSV needs exactly one of the columns {' or '.join(COLUMNS)};"
            f" it has {', '.join(table.columns) or 'none'}"
        )
    column = found[0]
    rows = 0
    for line, row in table.rows:
        if not any(cell.strip() for cell in row.values()):
            continue
        rows += 1
        if rows > max_rows:
            raise CsvError(f"the CSV has more than {max_rows} rows; split it")
        for name, cell in row.items():
            if cell.startswith(c.FORMULA_START):
                raise CsvError(f"row {line}, column {name!r} starts with {cell[0]!r}: formulas are refused")
        value = row[column].strip()
        if not value:
            raise CsvError(f"row {line} has no {column}")
        is_url = value.startswith(("http://", "https://"))
        if column == "url" and not is_url:
            raise CsvError(f"row {line}: {value[:80]!r} is not an http(s) URL")
        if column == "path" and is_url:
            raise CsvError(f"row {line}: {value[:80]!r} is outside your images; give paths relative to them")
        try:
            owner_source("s3://owner/", value)
        except InputError as e:
            raise CsvError(f"row {line}: {e}") from e
    if rows == 0:
        raise CsvError("the CSV has a header but no rows")
    return CheckedCsv(column, rows, data)


def count_for_date(manifest: ManifestInput, date: dt.date, store: Any) -> int:
    """How many images the configured manifest lists for `date` (streamed; InputError names a bad one)."""
    spec = ClassificationBatchSpec.model_validate(
        {
            "modelRef": {"name": "count"},
            "input": {"manifest": manifest.to_k8s()},
            "date": date.isoformat(),
            "output": {"uri": "file:///dev/null"},
        }
    )
    return sum(1 for _ in items(spec, store, date))


async def read_csv(file: UploadFile, config: Any) -> CheckedCsv:
    """An uploaded batch CSV, read up to its limit (413 past it) and checked (422 saying why)."""
    data = await file.read(config.max_csv_bytes + 1)
    if len(data) > config.max_csv_bytes:
        raise HTTPException(413, f"the CSV is larger than {config.max_csv_bytes} bytes")
    try:
        return check_csv(data, config.max_batch_rows)
    except CsvError as e:
        raise HTTPException(422, str(e)) from e


async def check_webhook_url(url: str, config: Any) -> None:
    """422 for a webhook URL the guard refuses (not http(s), credentials, a private address)."""
    try:
        await asyncio.to_thread(target, url, FetchPolicy.allowing(*config.fetch_allowed_networks))
    except FetchError as e:
        raise HTTPException(422, f"webhook_url: {e}") from e
