"""Image counts have one shape (core's BatchCounts): the worker writes them, the operator sums the
shards', the gateway stores and shows them; a record the gateway stored before keeps reading."""

from __future__ import annotations

import json

import pytest

from kubeclassify.core.resources import BatchCounts
from kubeclassify.gateway.batches import BatchRecord

pytestmark = pytest.mark.unit


def test_counts_another_process_wrote_read_with_what_is_missing_as_zero() -> None:
    assert BatchCounts.read(None) == BatchCounts()
    assert BatchCounts.read({"total": "3", "failed": 1, "skipped": None}) == BatchCounts(total=3, failed=1)
    assert BatchCounts.read({"unadmitted": 0}).unadmitted is None, "shown only when some were"


def test_shards_add_up_and_unadmitted_stays_unset_unless_some_were() -> None:
    counts = BatchCounts()
    counts.add(BatchCounts(total=4, classified=3, failed=1))
    counts.add(BatchCounts(total=2, classified=2, skipped=1))
    assert counts == BatchCounts(total=6, classified=5, failed=1, skipped=1)
    counts.add(BatchCounts(unadmitted=7))
    assert counts.unadmitted == 7


def test_what_the_worker_writes_is_what_the_others_read() -> None:
    written = BatchCounts(total=9, classified=7, failed=1, skipped=1, unadmitted=2)
    assert BatchCounts.read(json.loads(json.dumps(written.model_dump()))) == written


def record_fields() -> dict[str, object]:
    return {
        "name": "ann-0001",
        "owner": "ann",
        "model": "digits",
        "column": "url",
        "input_uri": "s3://b/in.csv",
        "output_uri": "s3://b/out.csv",
        "reserved": 3,
    }


def test_a_batch_record_round_trips_and_shows_its_counts() -> None:
    record = BatchRecord(**record_fields(), counts=BatchCounts(total=3, classified=2, failed=1))
    again = BatchRecord.from_json(record.to_json())
    assert again == record
    assert again.public()["counts"] == {
        "total": 3,
        "classified": 2,
        "failed": 1,
        "skipped": 0,
        "unadmitted": None,
    }


def test_a_batch_record_stored_with_its_counts_at_the_top_still_reads() -> None:
    old = {**record_fields(), "total": 3, "classified": 2, "failed": 1, "skipped": 0, "state": "Succeeded"}
    record = BatchRecord.from_json(json.dumps(old))
    assert record.counts == BatchCounts(total=3, classified=2, failed=1)
    assert record.state == "Succeeded"
