"""The container images' recipes: each Dockerfile installs the wheel with only its component's extra,
as a non-root user, from pinned bases. The operator and gateway installs are made for real here, in
fresh virtual environments from the built wheel: no TensorFlow there, and their commands run."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from harness.kubeapi_launch import ROOT

COMPONENTS = {"operator": "operator", "gateway": "gateway", "inference": "inference,${VARIANT}"}
PACKAGE_FOLDERS = [
    str(Path(folder).parent)  # core/kubeclassify/core -> core/kubeclassify
    for folder in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ].values()
]


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_each_dockerfile_installs_its_extra_as_a_non_root_user(component: str) -> None:
    text = (ROOT / component / "Dockerfile").read_text()
    assert f'[{COMPONENTS[component]}]"' in text, "only the component's extra"
    assert "-c constraints.txt" in text, "the pinned versions"
    bases = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert bases and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", bases[0]), "a pinned base image"
    assert ":latest" not in text
    assert re.search(r"^USER 10001:10001$", text, re.M), "non-root"
    ignored = (ROOT / ".dockerignore").read_text()
    assert ignored.splitlines()[1] == "*"
    for folder in PACKAGE_FOLDERS:  # one wheel: every component's package, so every registered command loads
        assert f"COPY {folder} {folder}" in text
        assert f"!{folder}/" in ignored


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(ROOT)],
        check=True,
    )
    return next(out.glob("kubeclassify-*.whl"))


@pytest.mark.parametrize(("extra", "command"), [("gateway", "gateway"), ("operator", "operator")])
def test_a_component_install_has_no_tensorflow_and_runs(
    wheel: Path, tmp_path: Path, extra: str, command: str
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "-c", str(ROOT / "constraints.txt"), f"{wheel}[{extra}]"],
        check=True,
    )
    for module in ("tensorflow", "keras", "kserve"):
        probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True)
        assert probe.returncode != 0, f"{module} is importable with only the {extra} extra"
    kubeclassify = str(venv / "bin" / "kubeclassify")
    root = subprocess.run([kubeclassify, "--help"], capture_output=True, text=True)
    assert root.returncode == 0 and command in root.stdout, root.stderr
    own = subprocess.run([kubeclassify, command, "run", "--help"], capture_output=True, text=True)
    assert own.returncode == 0 and "usage: kubeclassify" in own.stdout, own.stderr
    serve = subprocess.run(
        [kubeclassify, "train", "digits", "--output", str(tmp_path / "model")], capture_output=True, text=True
    )
    assert serve.returncode == 3 and "pip install 'kubeclassify[inference,cpu]'" in serve.stderr
