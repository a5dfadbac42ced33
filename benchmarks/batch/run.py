"""Batch benchmark: the worker against the model alone and a seed-style loop, in one run.

Data: JPEG photos of varied sizes (cut from scikit-learn's sample photos) in a local SeaweedFS, with
a manifest CSV over several dates. For MobileNetV2 and ResNet50V2 (weights=None, 224x224): the model
alone on pre-decoded tensors at its best batch size; the batch worker over the manifest (fetching,
decoding and classifying, writing and publishing the results); and a seed-style loop (download one
image to disk, decode it, `model.predict` it alone, append a row to a CSV). Then the worker through
the predictor (mode remote) beside the worker in process, over the same images: images/s each and
CPU ms per image in the worker and the predictor. Then the digits CNN on
8x8 PNGs (decoding is the limit: images/s per core), and a 10-million-row manifest filtered to one
date in a separate process (rows/s and its peak RSS). Run: `make bench-batch`.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import build_model, digits_cnn, model_only_fresh, photos, write_results  # noqa: E402

from kubeclassify.cli.services import S3Server, start_predictor, start_seaweedfs
from kubeclassify.core.resources import ClassificationBatchSpec, ImageInputSpec  # noqa: E402
from kubeclassify.core.storage import ObjectStore  # noqa: E402
from kubeclassify.inference.preprocess import load_image  # noqa: E402
from kubeclassify.inference.threads import available_cpus, model_streams  # noqa: E402

DATES = ["2026-11-17", "2026-11-18", "2026-11-19", "2026-11-20"]
SCAN = """
import datetime, sys, time
from kubeclassify.core.resources import ClassificationBatchSpec
from kubeclassify.core.settings import Settings
from kubeclassify.core.storage import ObjectStore
from kubeclassify.core.sources import items, shard_of
spec = ClassificationBatchSpec.model_validate_json(sys.argv[1])
store = ObjectStore(Settings().s3)  # credentials from the environment, never on a command line
t = time.perf_counter()
day = datetime.date.fromisoformat(sys.argv[2])
rows = sum(1 for it in items(spec, store, day) if shard_of(it.source, 4) >= 0)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec from the (large) parent process.
hwm = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(rows, time.perf_counter() - t, hwm)
"""


def upload(store: ObjectStore, bucket: str, blobs: list[bytes], ext: str) -> list[tuple[str, str]]:
    rows = [
        (f"images/{DATES[i % len(DATES)]}/{i:06d}.{ext}", DATES[i % len(DATES)]) for i in range(len(blobs))
    ]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda r: store.write(f"s3://{bucket}/{r[0][0]}", r[1]), zip(rows, blobs, strict=True)))
    return rows


def manifest(store: ObjectStore, uri: str, rows: list[tuple[str, str]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["filepath", "date"])
    w.writerows(rows)
    store.write(uri, buf.getvalue().encode())


def worker_rate(
    workers: int,
    s3: S3Server,
    bucket: str,
    name: str,
    folder: Path,
    spec_input: dict[str, object],
    batch: int,
    manifest_uri: str,
    predictor_url: str | None = None,
    run: str = "",
) -> tuple[float, float, int]:
    """The worker's images/s over the manifest, run as the Job runs it (its own process), and its
    CPU ms per image and images classified: in process, or (`predictor_url`) mode remote, through
    the predictor."""
    mode = "remote" if predictor_url else "inProcess"
    spec = {
        "modelRef": {"name": name},
        "input": {"manifest": {"uri": manifest_uri, "root": f"s3://{bucket}/"}},
        "output": {"uri": f"s3://{bucket}/out-{name}-{mode}{run}/predictions.csv"},  # each run its own
        "mode": mode,
    }
    (folder / "batch.json").write_text(json.dumps(spec))
    model_deployment_file(folder, spec_input, batch)
    remote = ["--predictor-url", predictor_url] if predictor_url else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [
            *(sys.executable, "-m", "kubeclassify.inference.batch", "--workers", str(workers)),
            *(
                "--batch",
                str(folder / "batch.json"),
                "--model-deployment",
                str(folder / "model-deployment.json"),
                *remote,
            ),
        ],
        env={**os.environ, **s3_env(s3)},
        capture_output=True,
        text=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"the worker failed ({done.returncode}): {done.stderr[-3000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["published"] and summary["counts"]["failed"] == 0, summary
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    classified = int(summary["counts"]["classified"])
    return float(summary["images_per_second"]), 1000 * cpu / classified, classified


def model_deployment_file(folder: Path, spec_input: dict[str, object], batch: int) -> Path:
    """The ModelDeployment spec of the model in `folder`, as the worker and the predictor read it."""
    model = {"model": {"uri": f"file://{folder}"}, "input": spec_input, "batching": {"maxBatchSize": batch}}
    path = folder / "model-deployment.json"
    path.write_text(json.dumps(model))
    return path


def process_cpu(pid: int) -> float:
    """utime + stime of a running process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def remote_against_in_process(
    workers: int, s3: S3Server, arch: str, folder: Path, batch: int, tmp: Path, seaweed_ms: float
) -> dict[str, float]:
    """The worker through the predictor (mode remote) beside the worker in process: the same images
    in the same run; images/s each, and CPU ms per image in the worker and in the predictor."""
    spec_input: dict[str, object] = {"height": 224, "width": 224, "scaling": "-1..1"}
    spec_file = model_deployment_file(folder, spec_input, batch)
    args = (workers, s3, "bench", arch, folder, spec_input, batch, "s3://bench/manifest.csv")
    in_process, in_process_cpu, _ = worker_rate(*args, run="-beside")  # apart from the models part's
    predictor = start_predictor(spec_file, tmp / "logs", arch, timeout=300)
    try:
        worker_rate(
            *args, predictor_url=predictor.url, run="-warm"
        )  # warm: the predictor's first calls build its graph
        served = process_cpu(predictor.process.pid)
        remote, remote_cpu, images = worker_rate(*args, predictor_url=predictor.url, run="-beside")
        served_ms = 1000 * (process_cpu(predictor.process.pid) - served) / images
    finally:
        predictor.stop()
    # Every core busy with the worker, the predictor and SeaweedFS, nothing else: the most remote
    # could do here, as a share of in process (the worker's CPU counts its start too).
    per_image = remote_cpu + served_ms + seaweed_ms
    bound = available_cpus() * 1000 / per_image / in_process
    return {
        "in_process": round(in_process, 1),
        "remote": round(remote, 1),
        "remote_cpu_ms_per_image": round(per_image, 2),
        "remote_over_in_process_bound": round(bound, 3),
        "remote_over_in_process": round(remote / in_process, 3),
        "worker_cpu_ms_per_image_in_process": round(in_process_cpu, 2),
        "worker_cpu_ms_per_image_remote": round(remote_cpu, 2),
        "predictor_cpu_ms_per_image": round(served_ms, 2),
    }


def s3_env(s3: S3Server) -> dict[str, str]:
    """The S3 settings as environment variables: credentials never go on a command line."""
    return {
        "KUBECLASSIFY_S3__ENDPOINT_URL": s3.endpoint_url,
        "KUBECLASSIFY_S3__ACCESS_KEY_ID": s3.access_key_id,
        "KUBECLASSIFY_S3__SECRET_ACCESS_KEY": s3.secret_access_key,
    }


def pipeline_cost(store: ObjectStore, s3: S3Server, uris: list[str]) -> tuple[float, float]:
    """CPU milliseconds per image to fetch, decode and resize to 224x224 (one thread, this process),
    and what SeaweedFS spends serving the GETs: the work that shares the cores with the model."""
    spec = ImageInputSpec(height=224, width=224, scaling="-1..1")

    def served() -> float:  # utime + stime of the S3 server, in seconds
        fields = Path(f"/proc/{s3.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    for uri in uris[:30]:  # warm: the client, its connections, Pillow's plugins
        load_image(store.read(uri), spec)
    cpu, s3_cpu = time.process_time(), served()
    for uri in uris:
        load_image(store.read(uri), spec)
    return 1000 * (time.process_time() - cpu) / len(uris), 1000 * (served() - s3_cpu) / len(uris)


def model_alone(
    folder: Path, sizes: tuple[int, ...], seconds: float, shape: tuple[int, int, int] = (224, 224, 3)
) -> dict[int, tuple[int, float]]:
    """The model alone, each way it can run here: one call at a time with TensorFlow's own pools,
    and as many calls at once as the worker makes. {streams: (batch size, img/s, CPU ms per image)}"""
    ways = sorted({1, model_streams(0)})
    return {n: model_only_fresh(folder, sizes, seconds, shape, streams=n) for n in ways}


def seed_loop(store: ObjectStore, bucket: str, rows: list[tuple[str, str]], folder: Path, tmp: Path) -> float:
    """The seed's way: one image at a time, to disk, decoded, model.predict, appended to a CSV."""
    import keras

    model = keras.models.load_model(folder / "model.keras", compile=False)
    model.predict(np.zeros((1, 224, 224, 3), np.float32), verbose=0)
    out = tmp / "seed-predictions.csv"
    started = time.perf_counter()
    for path, date in rows:
        local = tmp / "download.jpg"
        local.write_bytes(store.read(f"s3://{bucket}/{path}"))
        image = Image.open(local).convert("RGB").resize((224, 224))
        x = np.asarray(image, dtype=np.float32)[None] / 127.5 - 1.0
        label = int(model.predict(x, verbose=0).argmax())
        with open(out, "a", newline="") as f:
            csv.writer(f).writerow([path, date, label])
    return len(rows) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="mobilenetv2,resnet50v2")
    parser.add_argument("--images", type=int, default=1200, help="photos in the bucket (%(default)s)")
    parser.add_argument("--seed-images", type=int, default=120, help="images for the seed-style loop")
    parser.add_argument("--manifest-rows", type=int, default=10_000_000)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--workers", type=int, default=16, help="the worker's fetch and decode threads")
    parser.add_argument(
        "--parts", default="models,remote,digits,manifest", help="which measurements (%(default)s)"
    )
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/batch.json"))
    args = parser.parse_args()
    results: dict[str, object] = {"cpus": os.cpu_count(), "images": args.images}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        s3 = start_seaweedfs(tmp / "s3", tmp / "logs")
        settings = s3.settings()
        store = ObjectStore(settings)
        try:
            store.create_bucket("bench")
            rows = upload(store, "bench", photos(args.images), "jpg")
            manifest(store, "s3://bench/manifest.csv", rows)
            sizes = [Image.open(io.BytesIO(store.read(f"s3://bench/{p}"))).size for p, _ in rows[:50]]
            print(f"{args.images} photos over {len(DATES)} dates, e.g. {sizes[:4]}", flush=True)
            parts = set(args.parts.split(","))
            decode_ms, served_ms = pipeline_cost(store, s3, [f"s3://bench/{p}" for p, _ in rows[:300]])
            print(
                f"fetch, decode and resize to 224x224: {decode_ms:.2f} CPU ms per image"
                f" (+ {served_ms:.2f} in SeaweedFS)",
                flush=True,
            )
            results["decode_cpu_ms_per_image"] = round(decode_ms, 2)
            results["seaweedfs_cpu_ms_per_image"] = round(served_ms, 2)
            for arch in args.models.split(",") if "models" in parts else []:
                folder = tmp / arch
                build_model(arch, folder)
                print(f"{arch}:", flush=True)
                before = model_alone(folder, (8, 16, 32), args.seconds)
                worker_bs = before[max(before)][0]  # the best size for the worker's way
                rate, _, _ = worker_rate(
                    args.workers,
                    s3,
                    "bench",
                    arch,
                    folder,
                    {"height": 224, "width": 224, "scaling": "-1..1"},
                    worker_bs,
                    "s3://bench/manifest.csv",
                )
                seed = seed_loop(store, "bench", rows[: args.seed_images], folder, tmp)
                after = {
                    n: model_only_fresh(folder, (bs,), args.seconds, streams=n)
                    for n, (bs, _, _) in before.items()
                }
                alone = {n: (before[n][1] + after[n][1]) / 2 for n in before}
                reference = max(alone.values())  # the model's best here, whichever way
                model_ms = before[max(alone, key=lambda n: alone[n])][2]
                # Every core busy with nothing but the model, decoding and SeaweedFS: the most the
                # worker could do here, as a share of the model alone.
                ceiling = available_cpus() * 1000 / (model_ms + decode_ms + served_ms) / reference
                print(
                    f"  worker {rate:.1f} img/s, seed-style loop {seed:.1f} img/s; model-only (mean of before"
                    f" and after) {', '.join(f'{v:.1f} with {n} at once' for n, v in alone.items())}"
                    f" -> worker/model-only {rate / reference:.2f}, worker/seed {rate / seed:.1f}x"
                    f"\n  the model takes {model_ms:.1f} CPU ms per image at its best: with every core busy"
                    f" and nothing else to do, worker/model-only could reach {ceiling:.2f} here",
                    flush=True,
                )
                results[arch] = {
                    "model_only": round(reference, 1),
                    "model_only_by_streams": {str(n): round(v, 1) for n, v in alone.items()},
                    "model_only_batch": before[max(alone, key=lambda n: alone[n])][0],
                    "worker": round(rate, 1),
                    "worker_batch": worker_bs,
                    "seed_loop": round(seed, 1),
                    "worker_over_model_only": round(rate / reference, 3),
                    "worker_over_seed": round(rate / seed, 2),
                    "model_cpu_ms_per_image": round(model_ms, 2),
                    "ceiling": round(ceiling, 3),
                }

            if "remote" in parts:
                arch = args.models.split(",")[0]
                folder = tmp / arch
                if not (folder / "model.keras").exists():
                    build_model(arch, folder)
                remote = remote_against_in_process(args.workers, s3, arch, folder, 16, tmp, served_ms)
                print(
                    f"{arch} through the predictor (mode remote): {remote['remote']:.1f} img/s,"
                    f" in process {remote['in_process']:.1f} img/s"
                    f" -> remote/in-process {remote['remote_over_in_process']:.2f}; worker CPU ms per image"
                    f" {remote['worker_cpu_ms_per_image_remote']:.2f} remote,"
                    f" {remote['worker_cpu_ms_per_image_in_process']:.2f} in process;"
                    f" predictor {remote['predictor_cpu_ms_per_image']:.2f}\n  with every core busy, remote"
                    f" needs {remote['remote_cpu_ms_per_image']:.1f} CPU ms per image (worker, predictor,"
                    " SeaweedFS): remote/in-process could reach"
                    f" {remote['remote_over_in_process_bound']:.2f} here",
                    flush=True,
                )
                results["remote"] = {"model": arch, **remote}

            if "digits" in parts:
                digits_spec = ImageInputSpec(height=32, width=32, channels=1, color_mode="grayscale")
                pngs = digits_cnn(tmp / "digits")
                store.create_bucket("digits")
                digit_rows = upload(store, "digits", pngs, "png")
                manifest(store, "s3://digits/manifest.csv", digit_rows)
                cnn_alone = max(
                    r for _, r, _ in model_alone(tmp / "digits", (64,), args.seconds, (32, 32, 1)).values()
                )
                rate, _, _ = worker_rate(
                    args.workers,
                    s3,
                    "digits",
                    "digits",
                    tmp / "digits",
                    digits_spec.to_k8s(),
                    64,
                    "s3://digits/manifest.csv",
                )
                per_core = rate / (os.cpu_count() or 1)
                print(
                    f"digits CNN: worker {rate:.0f} img/s ({per_core:.0f} per core);"
                    f" model alone {cnn_alone:.0f} img/s",
                    flush=True,
                )
                results["digits"] = {
                    "worker": round(rate, 1),
                    "per_core": round(per_core, 1),
                    "model_only": round(cnn_alone, 1),
                }

            if "manifest" in parts:
                big = tmp / "big.csv"
                with open(big, "w") as f:
                    f.write("filepath,date\n")
                    dates = [dt.date(2026, 1, 1) + dt.timedelta(days=d) for d in range(10)]
                    for i in range(args.manifest_rows):
                        f.write(f"images/{dates[i % 10]}/{i:09d}.jpg,{dates[i % 10]}\n")
                with open(big, "rb") as f:
                    store.write("s3://bench/big.csv", f)
                spec = ClassificationBatchSpec.model_validate(
                    {
                        "modelRef": {"name": "x"},
                        "input": {"manifest": {"uri": "s3://bench/big.csv"}},
                        "date": "2026-01-05",
                        "output": {"uri": "s3://bench/{date}/p.csv"},
                    }
                )
                env = {**os.environ, **s3_env(s3)}
                done = subprocess.run(
                    [sys.executable, "-c", SCAN, spec.model_dump_json(by_alias=True), "2026-01-05"],
                    capture_output=True,
                    text=True,
                    check=True,
                    env=env,
                )
                kept, seconds, rss_kib = done.stdout.split()
                rows_per_s = args.manifest_rows / float(seconds)
                print(
                    f"manifest of {args.manifest_rows:,} rows ({big.stat().st_size / 2**20:.0f} MiB):"
                    f" {kept} rows for one"
                    f" date, {rows_per_s:,.0f} rows/s, peak RSS {int(rss_kib) / 1024:.0f} MiB",
                    flush=True,
                )
                results["manifest"] = {
                    "rows": args.manifest_rows,
                    "kept": int(kept),
                    "rows_per_s": round(rows_per_s),
                    "peak_rss_mib": round(int(rss_kib) / 1024),
                }
        finally:
            s3.stop()
    write_results(args.output, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
