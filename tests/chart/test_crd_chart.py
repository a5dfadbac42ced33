"""The CRD chart lints strictly with the real helm, renders exactly the generated CRDs, and the
CRDs are valid for the current Kubernetes release."""

from __future__ import annotations

import subprocess
from pathlib import Path

import kubernetes_validate
import yaml

from kubeclassify.core.crds import all_crds

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kubeclassify-crds"


def test_helm_lint_strict(helm: str) -> None:
    done = subprocess.run([helm, "lint", "--strict", str(CHART)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_template_renders_the_generated_crds_and_they_validate(helm: str) -> None:
    done = subprocess.run(
        [helm, "template", "kc", str(CHART)], capture_output=True, text=True, timeout=120, check=True
    )
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert sorted(d["metadata"]["name"] for d in docs) == sorted(
        c["metadata"]["name"] for c in all_crds().values()
    )
    assert sorted(docs, key=lambda d: d["metadata"]["name"]) == sorted(
        all_crds().values(), key=lambda d: d["metadata"]["name"]
    )
    version = kubernetes_validate.latest_version()
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)
