"""The batch command refuses unusable arguments with exit 2 and a message, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubeclassify.core.cli import main

BATCH = {
    "metadata": {"name": "daily"},
    "spec": {
        "modelRef": {"name": "digits"},
        "input": {"manifest": {"uri": "s3://incoming/metadata.csv"}},
        "schedule": {"cron": "30 1 * * *"},
        "output": {"uri": "s3://results/{date}/predictions.csv"},
        "parallelism": 2,
    },
}
MODEL = {"metadata": {"name": "digits"}, "spec": {"model": {"uri": "s3://models/digits/"}}}


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    monkeypatch.delenv("KUBECLASSIFY_BATCH", raising=False)
    monkeypatch.delenv("KUBECLASSIFY_MODEL_DEPLOYMENT", raising=False)
    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    (tmp_path / "cb.yaml").write_text(yaml.safe_dump(BATCH))
    (tmp_path / "md.yaml").write_text(yaml.safe_dump(MODEL))
    return str(tmp_path / "cb.yaml"), str(tmp_path / "md.yaml")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "one date at a time: pass --date"),
        (["--date", "2026-11-20", "--shard", "2"], "shard 2 is outside 0..1"),
        (["--date", "2026-13-01"], "month must be in 1..12"),
        (["--date", "2026-11-20", "--rerun", "../r1"], "--rerun '../r1': use letters, digits and dashes"),
        (["--date", "2026-11-20", "--model-streams", "-1"], "--model-streams must be 0 (automatic) or more"),
        (["--date", "2026-11-20", "--workers", "0"], "--workers 1 or more"),
        (["--date", "2026-11-20", "--progress-every", "-1"], "--progress-every and --max-images 0 or more"),
        (["--date", "2026-11-20", "--progress-every", "nan"], "--progress-every and --max-images 0 or more"),
        (["--date", "2026-11-20", "--max-images", "-1"], "--progress-every and --max-images 0 or more"),
    ],
)
def test_unusable_arguments_exit_2(
    files: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    batch, model = files
    log = tmp_path / "termination.log"
    code = main(
        ["batch", "run", "--batch", batch, "--model-deployment", model, "--termination-log", str(log), *extra]
    )
    assert code == 2
    assert message in capsys.readouterr().err
    assert message in log.read_text(), "the operator reads the reason from the termination message"


def test_no_batch_at_all(files: tuple[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["batch", "run", "--termination-log", str(tmp_path / "t.log")])
    assert (
        code == 2
        and "no ClassificationBatch: pass a file or set KUBECLASSIFY_BATCH" in capsys.readouterr().err
    )
