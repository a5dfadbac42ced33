"""The layers of DESIGN.md's layout hold, and `make lint` would catch each one broken: the import-linter
contracts (pyproject.toml) run over the tree as it is, then over copies that each break one layer."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ("core", "cli", "operator", "gateway", "inference")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` over the components under `tree`, with the project's contracts."""
    path = ":".join(str(tree / c) for c in COMPONENTS)
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(ROOT / "pyproject.toml")],
        cwd=tree,
        env={"PYTHONPATH": path, "PATH": str(LINT_IMPORTS.parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_tree_keeps_every_layer() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "source", "contract"),
    [
        (
            "core/kubeclassify/core/broken.py",
            "from kubeclassify.operator import kube",
            "core is the contract: it imports no component",
        ),
        (
            "core/kubeclassify/core/broken.py",
            "from kubeclassify.cli import stack",
            "core is the contract: it imports no component",
        ),
        (
            "gateway/kubeclassify/gateway/broken.py",
            "from kubeclassify.operator import kube",
            "no component imports another",
        ),
        (
            "cli/kubeclassify/cli/broken.py",
            "from kubeclassify.gateway import app",
            "no component imports another",
        ),
        (
            "cli/kubeclassify/cli/broken.py",
            "import tensorflow",
            "the gateway, the operator and the CLI load neither TensorFlow nor KServe",
        ),
        (
            "operator/kubeclassify/operator/broken.py",
            "import tensorflow",
            "the gateway, the operator and the CLI load neither TensorFlow nor KServe",
        ),
        (
            "gateway/kubeclassify/gateway/broken.py",
            "from kubeclassify.core import constants\nimport kserve",
            "the gateway, the operator and the CLI load neither TensorFlow nor KServe",
        ),
        (
            "inference/kubeclassify/inference/batch/broken.py",
            "from kubeclassify.inference.predictor import protocol",
            "a batch Job does not load KServe",
        ),
    ],
)
def test_a_broken_layer_fails_the_lint(tmp_path: Path, module: str, source: str, contract: str) -> None:
    for component in COMPONENTS:
        shutil.copytree(ROOT / component, tmp_path / component, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / module).write_text(source + "\n")
    done = lint_imports(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{contract} BROKEN" in done.stdout
    assert "1 broken" in done.stdout, "only the layer that was broken"
