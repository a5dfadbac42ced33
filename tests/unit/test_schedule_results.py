"""A schedule's results as one CSV: every run's rows under one header, matched by column name,
written a piece at a time."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from kubeclassify.core.storage import ObjectStore
from kubeclassify.gateway import results
from kubeclassify.gateway.results import merged_csv

pytestmark = pytest.mark.unit


def _write(store: ObjectStore, path: Path, rows: list[list[str]]) -> str:
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    store.write(f"file://{path}", text.getvalue().encode())
    return f"file://{path}"


def test_runs_merge_under_the_first_header_by_column_name(tmp_path: Path) -> None:
    store = ObjectStore()
    first = _write(store, tmp_path / "d1.csv", [["id", "label", "note"], ["a", "7", "two\nlines"]])
    later = _write(store, tmp_path / "d2.csv", [["label", "extra", "id"], ["3", "x", "b"]])
    empty = _write(store, tmp_path / "d3.csv", [])
    missing = f"file://{tmp_path}/replaced-meanwhile.csv"
    text = b"".join(merged_csv(store, [first, empty, missing, later])).decode()
    assert list(csv.reader(io.StringIO(text))) == [
        ["id", "label", "note"],
        ["a", "7", "two\nlines"],
        ["b", "3", ""],
    ]


def test_rows_come_a_chunk_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(results, "ROWS_PER_CHUNK", 10)
    store = ObjectStore()
    uris = [_write(store, tmp_path / f"{d}.csv", [["id"], *[[f"{d}-{i}"] for i in range(25)]]) for d in "ab"]
    chunks = list(merged_csv(store, uris))
    assert len(chunks) == 6, "per run: two full chunks and the rest"
    rows = list(csv.reader(io.StringIO(b"".join(chunks).decode())))
    assert rows[0] == ["id"] and len(rows) == 51


def test_no_results_is_an_empty_body(tmp_path: Path) -> None:
    assert list(merged_csv(ObjectStore(), [f"file://{tmp_path}/none.csv"])) == []
