"""The batch worker against a real SeaweedFS with the digits model: one date of a manifest, error
rows for everything unreadable, shards that merge into exactly what one shard writes, reruns
that duplicate nothing, and a shard killed mid-run."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from kubeclassify.core.model_card import ModelCard
from kubeclassify.core.progress import last_progress
from kubeclassify.core.resources import ClassificationBatchSpec, ModelDeploymentSpec
from kubeclassify.core.settings import S3Settings
from kubeclassify.core.sources import InputError
from kubeclassify.core.storage import ObjectStore
from kubeclassify.inference.batch.output import escape_cell
from kubeclassify.inference.batch.worker import BatchJob, run

RUN_TIME = dt.datetime(2026, 11, 21, 1, 30, tzinfo=dt.UTC)
DATES = ("2026-11-20", "2026-11-21")


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def dataset(store: ObjectStore, bucket: str) -> dict[str, Any]:
    """Digits as 8x8 PNGs under date prefixes, a manifest with a label column, and broken objects."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    rows = []
    for i in range(1500, 1700):  # mostly held out by the fixture model's split; all valid digits
        date = DATES[i % 2]
        path = f"images/{date}/digit-{i}.png"
        store.write(f"s3://{bucket}/{path}", png(pixels[i]))
        rows.append({"filepath": path, "date": date, "label": str(digits.target[i])})
    jpeg = io.BytesIO()
    Image.fromarray(pixels[0]).save(jpeg, format="JPEG")
    broken = {
        "corrupt.png": os.urandom(300),
        "truncated.jpg": jpeg.getvalue()[:40],
        "notes.png": b'=HYPERLINK("http://example.com") is text, not an image',
    }
    for name, data in broken.items():
        store.write(f"s3://{bucket}/images/{DATES[0]}/{name}", data)
        rows.append({"filepath": f"images/{DATES[0]}/{name}", "date": DATES[0], "label": "=broken"})
    rows.append({"filepath": f"images/{DATES[0]}/missing.png", "date": DATES[0], "label": "-missing"})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["filepath", "date", "label"])
    writer.writeheader()
    writer.writerows(rows)
    store.write(f"s3://{bucket}/manifest.csv", buf.getvalue().encode())
    return {"bucket": bucket, "rows": rows}


def batch_spec(bucket: str, output: str, parallelism: int = 1, fmt: str = "csv") -> ClassificationBatchSpec:
    return ClassificationBatchSpec.model_validate(
        {
            "modelRef": {"name": "digits"},
            "input": {"manifest": {"uri": f"s3://{bucket}/manifest.csv", "root": f"s3://{bucket}/"}},
            "date": DATES[0],
            "output": {"uri": f"s3://{bucket}/{output}/{{date}}/predictions.{fmt}", "format": fmt, "topK": 3},
            "parallelism": parallelism,
            "maxFailedFraction": 0.5,
        }
    )


def model_spec(digits_model: Path) -> ModelDeploymentSpec:
    card = ModelCard.model_validate_json((digits_model / "model-card.json").read_text())
    return ModelDeploymentSpec.model_validate(
        {
            "model": {"uri": f"file://{digits_model}"},
            "input": card.input.to_k8s(),
            "batching": {"maxBatchSize": 16},
        }
    )


def job(spec: ClassificationBatchSpec, digits_model: Path, shard: int = 0, shards: int = 1) -> BatchJob:
    return BatchJob(
        name="digits-daily",
        spec=spec,
        model_name="digits",
        model=model_spec(digits_model),
        date=dt.date.fromisoformat(DATES[0]),
        shard=shard,
        shards=shards,
        run_time=RUN_TIME,
        workers=8,
    )


def read_csv(store: ObjectStore, uri: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(store.read(uri).decode())))


def test_one_date_with_error_rows(store: ObjectStore, dataset: dict[str, Any], digits_model: Path) -> None:
    bucket = dataset["bucket"]
    summary = run(job(batch_spec(bucket, "one"), digits_model), store)
    expected = [r for r in dataset["rows"] if r["date"] == DATES[0]]
    assert summary.published and summary.counts.total == len(expected) == 104
    assert summary.counts.failed == 4 and summary.counts.classified == 100
    output = f"s3://{bucket}/one/{DATES[0]}/predictions.csv"
    rows = read_csv(store, output)
    assert len(rows) == len(expected), "one row per input image, no more, no less"
    assert [r["source"] for r in rows] == [f"s3://{bucket}/{e['filepath']}" for e in expected]
    assert all(r["date"] == DATES[0] for r in rows)
    good = [r for r in rows if not r["error"]]
    assert [r["input_label"] for r in rows] == [escape_cell(e["label"]) for e in expected], (
        "columns are carried"
    )
    assert len(good) == 100 and np.mean([r["label"] == r["input_label"] for r in good]) >= 0.9
    errors = {r["source"].rsplit("/", 1)[1]: r["error"] for r in rows if r["error"]}
    assert "does not exist" in errors["missing.png"]
    assert "not an image" in errors["corrupt.png"] and "not an image" in errors["notes.png"]
    assert "corrupt or truncated" in errors["truncated.jpg"] or "not an image" in errors["truncated.jpg"]
    first = good[0]
    assert (
        first["model_name"] == "digits" and first["model_version"] and first["time"] == RUN_TIME.isoformat()
    )
    assert [t["label"] for t in json.loads(first["top_k"])][0] == first["label"]
    raw = store.read(output).decode()
    assert "'=broken" in raw and "'-missing" in raw, "formula cells are escaped"
    success = json.loads(store.read(f"s3://{bucket}/one/{DATES[0]}/_SUCCESS"))
    assert success["rows"] == 104 and success["counts"]["failed"] == 4 and success["model_version"]


def test_shards_and_a_rerun_publish_exactly_what_one_shard_does(
    store: ObjectStore, dataset: dict[str, Any], digits_model: Path
) -> None:
    bucket = dataset["bucket"]
    run(job(batch_spec(bucket, "single"), digits_model), store)
    sharded = batch_spec(bucket, "sharded", parallelism=2)
    first = run(job(sharded, digits_model, shard=1, shards=2), store)
    assert not first.published, "one part of two is not a result"
    assert not store.exists(f"s3://{bucket}/sharded/{DATES[0]}/predictions.csv")
    again = run(job(sharded, digits_model, shard=1, shards=2), store)  # a retried shard replaces its part
    assert again.counts == first.counts
    last = run(job(sharded, digits_model, shard=0, shards=2), store)
    assert last.published and first.counts.total + last.counts.total == 104
    single = store.read(f"s3://{bucket}/single/{DATES[0]}/predictions.csv")
    assert store.read(f"s3://{bucket}/sharded/{DATES[0]}/predictions.csv") == single
    rerun = run(job(sharded, digits_model, shard=0, shards=2), store)
    assert rerun.already_published and rerun.counts.total == 104


def test_a_run_admitted_for_fewer_images_classifies_the_first_ones_in_any_shards(
    store: ObjectStore, dataset: dict[str, Any], digits_model: Path
) -> None:
    """Paid for 40 of the day's 104 images (more were listed after the run was admitted): the
    shards together classify exactly the first 40 and count the other 64 as unadmitted."""
    bucket = dataset["bucket"]
    sharded = batch_spec(bucket, "paid", parallelism=2)
    summaries = []
    for shard in (1, 0):
        one = job(sharded, digits_model, shard=shard, shards=2)
        one.max_images = 40
        summaries.append(run(one, store))
    assert summaries[-1].published
    assert sum(s.counts.total for s in summaries) == 40
    assert sum(s.counts.unadmitted or 0 for s in summaries) == 64
    rows = read_csv(store, f"s3://{bucket}/paid/{DATES[0]}/predictions.csv")
    expected = [r for r in dataset["rows"] if r["date"] == DATES[0]][:40]
    assert [r["source"] for r in rows] == [f"s3://{bucket}/{e['filepath']}" for e in expected]


def test_each_shard_reports_its_progress_and_its_total(
    store: ObjectStore, dataset: dict[str, Any], digits_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The progress lines the operator reads: done only grows, a total once known is the shard's
    own count, and the last line says where the shard ended."""
    bucket = dataset["bucket"]
    for shard in (0, 1):
        one = dataclasses.replace(
            job(batch_spec(bucket, "progress", 2), digits_model, shard, 2), progress_every=0
        )
        summary = run(one, store)
        lines = [line for line in capsys.readouterr().err.splitlines() if '"progress"' in line]
        seen = [last_progress(line) for line in lines]
        assert all(p is not None and p.shard == shard for p in seen)
        dones = [p.done for p in seen if p is not None]
        assert dones == sorted(dones) and len(dones) > summary.counts.total > 0
        assert {p.total for p in seen if p is not None} <= {None, summary.counts.total}
        final = last_progress("\n".join(lines))
        assert final is not None
        assert (final.done, final.failed, final.total) == (
            summary.counts.total,
            summary.counts.failed,
            summary.counts.total,
        )


def test_the_model_sees_one_shape_so_an_image_scores_the_same_bits_in_any_shard(
    store: ObjectStore, dataset: dict[str, Any], digits_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a CPU a batch of 4 and a batch of 16 round differently; a shard's last batch is padded."""
    from kubeclassify.inference import artifacts

    load = artifacts.load_for_deployment
    sizes: list[int] = []

    def recorded(*args: Any, **kwargs: Any) -> Any:
        loaded, labels, version = load(*args, **kwargs)

        def predict(x: np.ndarray) -> np.ndarray:
            sizes.append(len(x))
            return loaded.predict(x)

        return dataclasses.replace(loaded, predict=predict), labels, version

    monkeypatch.setattr(artifacts, "load_for_deployment", recorded)
    bucket = dataset["bucket"]
    for shard in range(3):  # 100 readable images: shards of about 33, none a multiple of 16
        run(job(batch_spec(bucket, "thirds", parallelism=3), digits_model, shard=shard, shards=3), store)
    assert sizes and set(sizes) == {16}


def test_concurrent_model_calls_give_the_rows_of_one_call_at_a_time(
    store: ObjectStore, dataset: dict[str, Any], digits_model: Path
) -> None:
    bucket = dataset["bucket"]
    one = run(dataclasses.replace(job(batch_spec(bucket, "streams-1"), digits_model), model_streams=1), store)
    three = run(
        dataclasses.replace(job(batch_spec(bucket, "streams-3"), digits_model), model_streams=3), store
    )
    assert one.published and three.published and one.counts == three.counts
    assert store.read(f"s3://{bucket}/streams-3/{DATES[0]}/predictions.csv") == store.read(
        f"s3://{bucket}/streams-1/{DATES[0]}/predictions.csv"
    ), "the same rows, in input order"


def test_a_replacing_run_classifies_again_and_replaces_the_results(
    store: ObjectStore, dataset: dict[str, Any], digits_model: Path
) -> None:
    bucket = dataset["bucket"]
    spec = batch_spec(bucket, "replaced", parallelism=2)
    for shard in (0, 1):
        run(job(spec, digits_model, shard=shard, shards=2), store)
    results = f"s3://{bucket}/replaced/{DATES[0]}/predictions.csv"
    before = read_csv(store, results)
    assert [r["error"] != "" for r in before if r["source"].endswith("missing.png")] == [True]
    # The missing image arrives; a plain rerun skips the published date, a replacing run does not.
    store.write(
        f"s3://{bucket}/images/{DATES[0]}/missing.png",
        store.read(f"s3://{bucket}/{dataset['rows'][0]['filepath']}"),
    )
    assert run(job(spec, digits_model, shard=0, shards=2), store).already_published
    shards = [dataclasses.replace(job(spec, digits_model, shard=s, shards=2), rerun="r1") for s in (0, 1)]
    first = run(shards[0], store)
    assert not first.published and read_csv(store, results) == before, "replaced only when whole"
    assert run(shards[1], store).published
    after = read_csv(store, results)
    assert len(after) == len(before) == 104
    assert [r["error"] for r in after if r["source"].endswith("missing.png")] == [""]
    assert json.loads(store.read(f"s3://{bucket}/replaced/{DATES[0]}/_SUCCESS"))["run"] == "r1"
    assert run(shards[1], store).published, "a retried shard of the run publishes nothing twice"
    assert read_csv(store, results) == after


def test_jsonl_output(store: ObjectStore, dataset: dict[str, Any], digits_model: Path) -> None:
    bucket = dataset["bucket"]
    run(job(batch_spec(bucket, "lines", fmt="jsonl"), digits_model), store)
    lines = store.read(f"s3://{bucket}/lines/{DATES[0]}/predictions.jsonl").decode().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 104
    missing = rows[-1]
    assert missing["source"].endswith("missing.png") and missing["label"] == "" and missing["error"]
    assert missing["input_label"] == "-missing", "JSON Lines need no formula escaping"
    assert all(r["label"].isdigit() for r in rows if not r["error"])


def test_bad_input_is_refused_before_any_work(store: ObjectStore, bucket: str, digits_model: Path) -> None:
    store.write(f"s3://{bucket}/manifest.csv", b"path,day\nx.png,2026-11-20\n")
    with pytest.raises(InputError, match="has no column 'filepath', 'date'; its columns are: 'path', 'day'"):
        run(job(batch_spec(bucket, "out"), digits_model), store)
    store.write(f"s3://{bucket}/manifest.csv", b"")
    with pytest.raises(InputError, match="is empty"):
        run(job(batch_spec(bucket, "out"), digits_model), store)


def test_formula_escaping() -> None:
    assert [escape_cell(v) for v in ("=1+1", "+x", "-2", "@SUM", "\tx", "plain", "")] == [
        "'=1+1",
        "'+x",
        "'-2",
        "'@SUM",
        "'\tx",
        "plain",
        "",
    ]


def test_a_shard_killed_mid_run_loses_and_duplicates_nothing(
    store: ObjectStore, dataset: dict[str, Any], digits_model: Path, s3_settings: S3Settings, tmp_path: Path
) -> None:
    bucket = dataset["bucket"]
    # A longer input, so the shard is surely mid-run when it is killed: every digit of the date 20 times.
    valid = [r for r in dataset["rows"] if r["date"] == DATES[0] and r["label"].isdigit()]
    lines = ["filepath,date"] + [f"{r['filepath']},{DATES[0]}" for r in valid] * 20
    store.write(f"s3://{bucket}/big.csv", "\n".join(lines).encode())
    spec = batch_spec(bucket, "killed")
    assert spec.input.manifest is not None
    spec.input.manifest.uri = f"s3://{bucket}/big.csv"
    (tmp_path / "cb.yaml").write_text(
        yaml.safe_dump({"metadata": {"name": "digits-daily"}, "spec": spec.to_k8s()})
    )
    (tmp_path / "md.yaml").write_text(
        yaml.safe_dump({"metadata": {"name": "digits"}, "spec": model_spec(digits_model).to_k8s()})
    )
    assert s3_settings.secret_access_key is not None
    env = {
        **os.environ,
        "KUBECLASSIFY_S3__ENDPOINT_URL": str(s3_settings.endpoint_url),
        "KUBECLASSIFY_S3__ACCESS_KEY_ID": str(s3_settings.access_key_id),
        "KUBECLASSIFY_S3__SECRET_ACCESS_KEY": s3_settings.secret_access_key.get_secret_value(),
    }
    argv = [
        sys.executable,
        "-m",
        "kubeclassify.inference.batch",
        "--batch",
        str(tmp_path / "cb.yaml"),
        "--model-deployment",
        str(tmp_path / "md.yaml"),
        "--run-time",
        RUN_TIME.isoformat(),
        "--termination-log",
        str(tmp_path / "termination.log"),
    ]
    proc = subprocess.Popen(
        [*argv, "--workers", "1", "--progress-every", "0.2"], env=env, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    # Read until the first progress line (any() stops there); pytest-timeout guards a hang.
    progressed = any('"progress"' in line for line in proc.stderr)
    assert progressed, "the shard ended without reporting progress"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not store.exists(f"s3://{bucket}/killed/{DATES[0]}/predictions.csv")
    assert list(store.iter_objects(f"s3://{bucket}/killed/")) == [], "a killed shard leaves nothing behind"
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "termination.log").read_text())
    assert summary["published"] and summary["counts"]["total"] == 2000
    rows = read_csv(store, f"s3://{bucket}/killed/{DATES[0]}/predictions.csv")
    assert len(rows) == 2000 and len({r["id"] for r in rows}) == 2000


def test_remote_mode_classifies_through_the_predictor(
    store: ObjectStore, dataset: dict[str, Any], digits_model: Path, tmp_path: Path
) -> None:
    from kubeclassify.cli.services import start_predictor
    from kubeclassify.core.predictor import PredictorUnavailable

    bucket = dataset["bucket"]
    local = run(job(batch_spec(bucket, "local"), digits_model), store)
    remote_spec = batch_spec(bucket, "remote").model_copy(update={"mode": "remote"})
    with pytest.raises(InputError, match="needs the predictor's URL"):
        run(job(remote_spec, digits_model), store)
    md = {"metadata": {"name": "digits"}, "spec": model_spec(digits_model).to_k8s()}
    (tmp_path / "md.yaml").write_text(yaml.safe_dump(md))
    predictor = start_predictor(tmp_path / "md.yaml", tmp_path, "digits")
    try:
        remote_job = job(remote_spec, digits_model)
        remote_job.predictor_url = predictor.url
        remote = run(remote_job, store)
    finally:
        predictor.stop()
    assert remote.counts == local.counts and remote.published
    by_local = read_csv(store, f"s3://{bucket}/local/{DATES[0]}/predictions.csv")
    by_remote = read_csv(store, f"s3://{bucket}/remote/{DATES[0]}/predictions.csv")
    assert [r["label"] for r in by_remote] == [r["label"] for r in by_local]
    assert {len(json.loads(r["top_k"])) for r in by_remote if not r["error"]} == {3}, "the batch's top k"
    assert {r["model_version"] for r in by_remote if not r["error"]} == {by_local[0]["model_version"]}
    assert sum(bool(r["error"]) for r in by_remote) == 4
    gone = job(batch_spec(bucket, "gone").model_copy(update={"mode": "remote"}), digits_model)
    gone.predictor_url = (
        predictor.url
    )  # stopped: the shard fails, to be retried, rather than erring every row
    with pytest.raises(PredictorUnavailable):
        run(gone, store)


def test_every_image_under_a_dated_prefix(
    store: ObjectStore, dataset: dict[str, Any], digits_model: Path
) -> None:
    bucket = dataset["bucket"]
    spec = ClassificationBatchSpec.model_validate(
        {
            "modelRef": {"name": "digits"},
            "date": DATES[1],
            "input": {"prefix": {"uri": f"s3://{bucket}/images/{{date}}/"}},
            "output": {"uri": f"s3://{bucket}/prefix/{{date}}/predictions.csv"},
        }
    )
    batch = job(spec, digits_model)
    batch.date = dt.date.fromisoformat(DATES[1])
    summary = run(batch, store)
    assert summary.counts.total == 100 and summary.counts.failed == 0
    rows = read_csv(store, f"s3://{bucket}/prefix/{DATES[1]}/predictions.csv")
    assert all(r["source"].startswith(f"s3://{bucket}/images/{DATES[1]}/") for r in rows)


def test_a_csv_of_urls_goes_through_the_ssrf_guard(
    store: ObjectStore, bucket: str, digits_model: Path
) -> None:
    import http.server
    import threading

    from sklearn.datasets import load_digits

    from kubeclassify.core.fetch import FetchPolicy

    digits = load_digits()
    images = {
        f"/d{i}.png": png((digits.images[i] * (255.0 / 16.0)).round().astype(np.uint8)) for i in range(10)
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = images.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        urls = [f"{base}{p}" for p in images] + ["http://169.254.169.254/latest/meta-data/"]
        store.write(f"s3://{bucket}/urls.csv", ("url\n" + "\n".join(urls)).encode())
        spec = ClassificationBatchSpec.model_validate(
            {
                "modelRef": {"name": "digits"},
                "input": {"urls": {"uri": f"s3://{bucket}/urls.csv"}},
                "output": {"uri": f"s3://{bucket}/urls-out/predictions.csv"},
            }
        )
        batch = job(spec, digits_model)
        batch.date = None
        batch.fetch_policy = FetchPolicy.allowing("127.0.0.0/8")
        summary = run(batch, store)
    finally:
        httpd.shutdown()
        httpd.server_close()
    rows = read_csv(store, f"s3://{bucket}/urls-out/predictions.csv")
    assert summary.counts.total == 11 and len(rows) == 11
    assert sum(r["label"] == str(digits.target[i]) for i, r in enumerate(rows[:10])) >= 8
    assert "not a public address" in rows[10]["error"]


def test_re_encoded_copies(store: ObjectStore, dataset: dict[str, Any], digits_model: Path) -> None:
    bucket = dataset["bucket"]
    raw = batch_spec(bucket, "copies").to_k8s()
    raw["output"]["copyImages"] = {
        "uri": f"s3://{bucket}/copies/{{date}}/thumbs/",
        "maxSize": 16,
        "quality": 70,
        "format": "jpeg",
    }
    run(job(ClassificationBatchSpec.model_validate(raw), digits_model), store)
    rows = read_csv(store, f"s3://{bucket}/copies/{DATES[0]}/predictions.csv")
    good = [r for r in rows if not r["error"]]
    assert all(r["copy"].startswith(f"s3://{bucket}/copies/{DATES[0]}/thumbs/") for r in good), good[0]
    thumb = Image.open(io.BytesIO(store.read(good[0]["copy"])))
    assert thumb.format == "JPEG" and thumb.size == (8, 8), "copies are never enlarged"
    assert all(r["copy"] == "" for r in rows if r["error"])
