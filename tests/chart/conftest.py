from __future__ import annotations

import shutil
import subprocess
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


CHARTS = Path(__file__).resolve().parents[2] / "charts"


@pytest.fixture(scope="session")
def chart(helm: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of both charts with the CRD chart built in as a dependency (`helm dependency build`)."""
    copy = tmp_path_factory.mktemp("charts")
    for name in ("kubeclassify", "kubeclassify-crds"):
        shutil.copytree(CHARTS / name, copy / name, ignore=shutil.ignore_patterns("charts", "*.tgz"))
    built = subprocess.run(
        [helm, "dependency", "build", str(copy / "kubeclassify")], capture_output=True, text=True, timeout=120
    )
    assert built.returncode == 0, built.stdout + built.stderr
    return copy / "kubeclassify"
