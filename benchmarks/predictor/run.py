"""Predictor benchmark: model-only images/s against the predictor over HTTP, in one run.

For MobileNetV2 and ResNet50V2 (weights=None, 224x224): the model alone at its best batch size,
then the predictor (a real KServe ModelServer process) answering encoded JPEG photos from 1, 8 and
32 concurrent clients, over V2 (base64 in JSON) and V1 (the raw image as the body). Prints
images/s, p50/p99 latency, the ratio to model-only, and bytes per image on the wire against the
FP32 tensor. Run: `make bench-predictor` (or python benchmarks/predictor/run.py --help).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import yaml  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import build_model, model_only, photos, write_results  # noqa: E402

from kubeclassify.cli.services import start_predictor


def load(
    host: str, port: int, requests: list[tuple[str, bytes, dict[str, str]]], clients: int, seconds: float
) -> list[float]:
    """`clients` threads with keep-alive connections send requests for `seconds`."""
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds
    errors: list[str] = []

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=120)
        i = k
        while time.perf_counter() < deadline:
            path, body, headers = requests[i % len(requests)]
            i += clients
            t0 = time.perf_counter()
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                errors.append(f"{resp.status} {data[:200]!r}")
                return
            with lock:
                latencies.append(time.perf_counter() - t0)
        conn.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"requests failed: {errors[0]}")
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="mobilenetv2,resnet50v2")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/predictor.json"))
    args = parser.parse_args()
    jpegs = photos()
    mean_jpeg = statistics.mean(len(j) for j in jpegs)
    v2_bodies = [
        json.dumps(
            {
                "inputs": [
                    {
                        "name": "image",
                        "shape": [1],
                        "datatype": "BYTES",
                        "data": [base64.b64encode(j).decode()],
                    }
                ]
            }
        ).encode()
        for j in jpegs
    ]
    fp32 = 224 * 224 * 3 * 4
    mean_v2 = statistics.mean(map(len, v2_bodies))
    print(
        f"wire: JPEG {mean_jpeg / 1024:.1f} KiB, V2 JSON {mean_v2 / 1024:.1f} KiB,"
        f" FP32 tensor {fp32 / 1024:.0f} KiB per image (FP32 / JPEG = {fp32 / mean_jpeg:.1f}x)"
    )
    results: dict[str, object] = {
        "cpus": os.cpu_count(),
        "jpeg_bytes": mean_jpeg,
        "fp32_bytes": fp32,
        "models": {},
    }  # filled below
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.models.split(","):
            folder = Path(tmp) / arch
            build_model(arch, folder)
            print(f"{arch}:", flush=True)
            best_bs, best_rate, _ = model_only(folder, (1, 8, 16, 32), args.seconds / 2)
            spec = {
                "metadata": {"name": arch},
                "spec": {
                    "model": {"uri": f"file://{folder}"},
                    "input": {"height": 224, "width": 224, "scaling": "-1..1"},
                    # The predictor batches up to the size at which the model alone is fastest here.
                    "batching": {"maxBatchSize": best_bs, "maxLatencyMs": 5},
                },
            }
            (folder.parent / f"{arch}.yaml").write_text(yaml.safe_dump(spec))
            server = start_predictor(folder.parent / f"{arch}.yaml", Path(tmp) / "logs", arch, timeout=600)
            host, port = "127.0.0.1", int(server.url.rsplit(":", 1)[1])
            rows = []
            try:
                for protocol in ("v2-base64", "v1-raw"):
                    if protocol == "v2-base64":
                        reqs = [
                            (f"/v2/models/{arch}/infer", b, {"Content-Type": "application/json"})
                            for b in v2_bodies
                        ]
                    else:
                        reqs = [
                            (f"/v1/models/{arch}:predict", j, {"Content-Type": "image/jpeg"}) for j in jpegs
                        ]
                    for clients in map(int, args.clients.split(",")):
                        load(host, port, reqs[:4], clients, 2.0)  # warm up
                        lat = load(host, port, reqs, clients, args.seconds)
                        rate = len(lat) / args.seconds
                        lat_ms = sorted(x * 1000 for x in lat)
                        p50, p99 = (
                            lat_ms[len(lat_ms) // 2],
                            lat_ms[min(len(lat_ms) - 1, int(len(lat_ms) * 0.99))],
                        )
                        rows.append(
                            {
                                "protocol": protocol,
                                "clients": clients,
                                "images_per_s": round(rate, 1),
                                "p50_ms": round(p50, 1),
                                "p99_ms": round(p99, 1),
                            }
                        )
                        print(
                            f"  {protocol:<9} {clients:>2} clients: {rate:7.1f} img/s  p50 {p50:7.1f} ms"
                            f"  p99 {p99:7.1f} ms  (ratio {rate / best_rate:.2f})",
                            flush=True,
                        )
            finally:
                server.stop()
            # The machine is shared: measure the model alone again, and divide by the mean of the two.
            _, after, _ = model_only(folder, (best_bs,), args.seconds / 2)
            reference = (best_rate + after) / 2
            print(
                f"  model-only before {best_rate:.1f}, after {after:.1f};"
                f" ratios against their mean, {reference:.1f} img/s:"
            )
            for row in rows:
                row["ratio_to_model_only"] = round(row["images_per_s"] / reference, 3)
                print(
                    f"    {row['protocol']:<9} {row['clients']:>2} clients: {row['ratio_to_model_only']:.2f}"
                )
            results["models"][arch] = {  # type: ignore[index]
                "model_only_images_per_s": round(reference, 1),
                "model_only_before": round(best_rate, 1),
                "model_only_after": round(after, 1),
                "model_only_batch": best_bs,
                "predictor": rows,
            }
    write_results(args.output, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
