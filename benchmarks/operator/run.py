"""Operator benchmark: ClassificationBatches created at a fixed rate against the API emulator.

Starts the emulator (tests/harness) and the real operator (`kubeclassify operator run -A`), creates
one ModelDeployment, then creates N one-off ClassificationBatches at R per second and watches Jobs:
the time from each batch's create request to its Job appearing on the watch (p50, p99, max), and
the operator's peak RSS (VmHWM). Goals: p99 <= 2 s at 20 per second; RSS <= 256 MiB.

Then the gateway's status lag on the Kubernetes backend: with G gateway batches (made through its REST
API, each a ClassificationBatch), each batch's status is set to Succeeded in turn, and the time until
`GET /v1/batches/{name}` says so is measured (p50, p99, max). Goal: p99 <= 1 s at 1,000 batches.
Run: `make bench-operator` (or `python benchmarks/operator/run.py --batches 1000 --rate 20
--gateway-batches 1000`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
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

from kubeclassify.cli.processes import free_ports, port_open, start_process  # noqa: E402
from kubeclassify.core import constants as c  # noqa: E402

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
    parser.add_argument(
        "--gateway-batches", type=int, default=1000, help="gateway batches for the status lag (0: skip)"
    )
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
            KUBECLASSIFY_OPERATOR__POLICY=json.dumps(
                {"namespaces": {NS: {"read": ["s3://data/", "s3://models/"], "write": ["s3://results/"]}}}
            ),
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
        try:
            lag = gateway_lag(kubeconfig, tmp, logs, args.gateway_batches) if args.gateway_batches else {}
        finally:
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
            **lag,
        },
    )
    return 0 if missing == 0 else 1


def gateway_lag(kubeconfig: Path, tmp: Path, logs: Path, batches: int) -> dict[str, object]:
    """The gateway's status lag with `batches` gateway batches on the Kubernetes backend."""
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from kubeclassify.cli.services import start_redis, start_seaweedfs
    from kubeclassify.core.storage import ObjectStore
    from kubeclassify.gateway.app import create_app
    from kubeclassify.gateway.config import GatewayConfig, GatewaySettings

    redis, s3 = start_redis(tmp / "redis", logs), start_seaweedfs(tmp / "s3", logs)
    try:
        s3_settings = s3.settings()
        ObjectStore(s3_settings).create_bucket("gateway")
        gateway = GatewayConfig(
            registration="open",
            redis_url=SecretStr(redis.url),
            token_secret=SecretStr("a benchmark's own token secret, long enough"),
            models_source="kubernetes",
            batch_backend="kubernetes",
            namespace=NS,
            kubeconfig=str(kubeconfig),
            default_model="digits",
            images_uri="s3://gateway/images",
            batches_uri="s3://gateway/batches",
            starting_credits=10 * batches,
            rate_limit_per_minute=100_000,
        )
        api = config.new_client_from_config(config_file=str(kubeconfig))
        custom = client.CustomObjectsApi(api)
        plural = c.PLURALS[c.CLASSIFICATION_BATCH]
        with TestClient(create_app(GatewaySettings(gateway=gateway, s3=s3_settings))) as gw:
            user = {"username": "bench", "password": "a benchmark's password"}
            gw.post("/v1/accounts", json=user)
            token = gw.post("/v1/auth/token", data=user).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            body = b"url\nhttps://images.example.com/a.png\n"
            names = []
            for _ in range(batches):
                made = gw.post("/v1/batches", files={"file": ("b.csv", body, "text/csv")}, headers=auth)
                assert made.status_code == 201, made.text
                names.append(made.json()["name"])
            ended = {"phase": "Succeeded", "counts": {"total": 1, "classified": 1, "failed": 0, "skipped": 0}}
            lags = []
            for name in names:
                began = time.perf_counter()
                custom.patch_namespaced_custom_object_status(
                    c.GROUP, c.VERSION, NS, plural, name, {"status": ended}
                )
                while gw.get(f"/v1/batches/{name}", headers=auth).json()["state"] != "Succeeded":
                    if time.perf_counter() - began > 30:
                        raise RuntimeError(f"the gateway did not see {name} end within 30 s")
                    time.sleep(0.002)
                lags.append(time.perf_counter() - began)
    finally:
        redis.stop()
        s3.stop()
    lags.sort()
    p50, p99 = statistics.median(lags), lags[max(0, int(len(lags) * 0.99) - 1)]
    print(
        f"gateway status lag at {batches} batches: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms,"
        f" max {lags[-1] * 1000:.0f} ms; goal: p99 <= 1000 ms"
    )
    return {
        "gateway_batches": batches,
        "gateway_lag_p50_ms": round(p50 * 1000),
        "gateway_lag_p99_ms": round(p99 * 1000),
        "gateway_lag_max_ms": round(lags[-1] * 1000),
    }


if __name__ == "__main__":
    sys.exit(main())
