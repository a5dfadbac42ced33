from __future__ import annotations

import sys
from pathlib import Path

import pytest


def _binary(name: str) -> str:
    path = Path(sys.prefix) / "bin" / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make tools`")
    return str(path)


@pytest.fixture(scope="session")
def helm() -> str:
    return _binary("helm")
