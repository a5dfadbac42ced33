"""Operator benchmark: ClassificationBatches created at a fixed rate against the API emulator.

Starts the emulator (tests/harness) and the real operator (`kubeclassify operator run -A`), creates
one ModelDeployment, then creates N one-off ClassificationBatches at R per second and watches Jobs:
the time from each batch's create request to its Job appearing on the watch (p50, p99, max), and
the operator's peak RSS (VmHWM). Goals: p99 <= 2 s at 20 per second; RSS <= 256 MiB.
Run: `make bench-operator` (or `python benchmarks/operator/run.py --batches 1000 --rate 20`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubernetes import client, config, watch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))
from common import write_results  # noqa: E402
from harness.kubeapi_launch import kubeconfig_for, start_kube_api  # noqa: E402

from kubeclassify.core import constants as c  # noqa: E402
from kubeclassify.core.local import free_ports, port_open, start_process  # noqa: E402

NS = "bench"
DATE = dt.date(2026, 11, 21)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="batches created per second")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/operator.json"))
    parser.add_argument("--logs", type=Path, help="keep the emulator's and the operator's logs here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        logs = args.logs or tmp / "logs"
        api_server = start_kube_api(logs)
        kubeconfig = kubeconfig_for(api_server.url, tmp / "kubeconfig")
        api = config.new_client_from_config(config_file=str(kubeconfig))
        custom, batch = client.CustomObjectsApi(api), client.BatchV1Api(api)
        custom.create_namespaced_custom_object(
            c.GROUP,
            c.VERSION,
            NS,
            c.PLURALS[c.MODEL_DEPLOYMENT],
            {
                "apiVersion": c.API_VERSION,
                "kind": c.MODEL_DEPLOYMENT,
                "metadata": {"name": "digits"},
                "spec": {"model": {"uri": "s3://models/digits/"}},
            },
        )
        metrics_port, liveness_port = free_ports(2)
        env = dict(
            os.environ,
            KUBECONFIG=str(kubeconfig),
            KUBECLASSIFY_LOG_LEVEL="INFO" if args.logs else "WARNING",
            KUBECLASSIFY_OPERATOR__METRICS_PORT=str(metrics_port),
            KUBECLASSIFY_OPERATOR__LIVENESS_PORT=str(liveness_port),
        )
        argv = [sys.executable, "-m", "kubeclassify.core.cli", "operator", "run", "--all-namespaces"]
        operator = start_process(
            "operator", argv, logs, lambda: port_open("127.0.0.1", liveness_port), timeout=60, env=env
        )
        try:
            time.sleep(2)  # the watch streams start after the liveness endpoint
            seen: dict[str, float] = {}
            stop = threading.Event()

            def watch_jobs() -> None:
                w = watch.Watch()
                while not stop.is_set():
                    for event in w.stream(batch.list_namespaced_job, NS, timeout_seconds=5):
                        seen.setdefault(event["object"].metadata.name, time.perf_counter())
                        if stop.is_set():
                            break

            watcher = threading.Thread(target=watch_jobs, daemon=True)
            watcher.start()
            sent: dict[str, float] = {}
            # Creates go out on schedule from a few threads, so a slow answer does not slow the rate.
            pool = ThreadPoolExecutor(8)
            started = time.perf_counter()
            for i in range(args.batches):
                target = started + i / args.rate
                time.sleep(max(0.0, target - time.perf_counter()))
                name = f"b{i:05d}"
                body = {
                    "apiVersion": c.API_VERSION,
                    "kind": c.CLASSIFICATION_BATCH,
                    "metadata": {"name": name},
                    "spec": {
                        "modelRef": {"name": "digits"},
                        "input": {"prefix": {"uri": "s3://data/images/{date}/"}},
                        "date": DATE.isoformat(),
                        "output": {"uri": f"s3://results/{name}/{{date}}.csv"},
                    },
                }
                sent[f"{name}-{DATE:%Y%m%d}"] = time.perf_counter()
                pool.submit(
                    custom.create_namespaced_custom_object,
                    c.GROUP,
                    c.VERSION,
                    NS,
                    c.PLURALS[c.CLASSIFICATION_BATCH],
                    body,
                )
            pool.shutdown(wait=True)
            achieved = args.batches / (time.perf_counter() - started)
            deadline = time.perf_counter() + 120
            while len(set(sent) & set(seen)) < len(sent) and time.perf_counter() < deadline:
                time.sleep(0.2)
            stop.set()
            status = Path(f"/proc/{operator.pid}/status").read_text().splitlines()
            hwm_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
        finally:
            operator.stop()
            api_server.stop()
    latencies = sorted(seen[n] - t for n, t in sent.items() if n in seen)
    missing = len(sent) - len(latencies)
    p50 = statistics.median(latencies)
    p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
    print(
        f"{args.batches} batches at {args.rate:g}/s (achieved {achieved:.1f}/s); Jobs seen: {len(latencies)}"
    )
    print(
        f"create -> Job: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms"
    )
    print(f"operator peak RSS: {hwm_kib / 1024:.0f} MiB; goals: p99 <= 2000 ms, RSS <= 256 MiB")
    write_results(
        args.output,
        {
            "cpus": os.cpu_count(),
            "batches": args.batches,
            "rate": args.rate,
            "achieved_rate": round(achieved, 2),
            "jobs_seen": len(latencies),
            "missing": missing,
            "p50_ms": round(p50 * 1000),
            "p99_ms": round(p99 * 1000),
            "max_ms": round(latencies[-1] * 1000),
            "operator_peak_rss_mib": round(hwm_kib / 1024),
        },
    )
    return 0 if missing == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
