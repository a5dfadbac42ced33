"""One rule for formula cells, in `core`: the gateway refuses an uploaded CSV with one, the batch
worker escapes one in its results. Both read the same prefixes."""

from __future__ import annotations

import pytest

from kubeclassify.core import constants as c
from kubeclassify.gateway.inputs import CsvError, check_csv
from kubeclassify.inference.batch.output import escape_cell


@pytest.mark.parametrize("start", c.FORMULA_START)
def test_a_formula_cell_is_refused_on_upload_and_escaped_in_results(start: str) -> None:
    cell = f"{start}HYPERLINK(1)"
    with pytest.raises(CsvError, match="formulas are refused"):
        check_csv(f'url,note\nhttp://example.com/a.png,"{cell}"\n'.encode(), max_rows=10)
    assert escape_cell(cell) == "'" + cell


def test_a_plain_cell_passes_both() -> None:
    assert check_csv(b"url,note\nhttp://example.com/a.png,a cat\n", max_rows=10).rows == 1
    assert escape_cell("a cat") == "a cat"
