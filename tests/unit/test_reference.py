"""docs/reference.md is what the code says today: regenerated, it does not change."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_reference_is_current() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "reference.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr + " (run `make reference`)"


def test_the_reference_covers_every_resource_setting_and_metric() -> None:
    text = (ROOT / "docs" / "reference.md").read_text()
    for needle in (
        "`spec.schedule.cron`",
        "`spec.canary.trafficPercent`",
        "`KUBECLASSIFY_GATEWAY__MANIFEST`",
        "`KUBECLASSIFY_OPERATOR__NAMESPACES`",
        "`KUBECLASSIFY_S3__ENDPOINT_URL`",
        "`kubeclassify_batch_images_total`",
        "| POST | `/v1/batches` |",
    ):
        assert needle in text, needle
