"""Gateway benchmark: what the gateway adds to a classification, and what auth costs per core.

Starts SeaweedFS, redis-server, the predictor serving the digits CNN and the gateway (one worker
process), all on loopback. Then, in one run:
- the same PNG posted straight to the predictor (`/v1/models/digits:predict`) and through the gateway
  (`POST /v1/classify`: token check, rate limit, debit, store to S3 in parallel, record in Redis),
  in turn, with 1 and with 32 concurrent clients: p50 and p99 of each, and what the gateway adds;
  then the gateway alone for classifications/s;
- in the same rounds, the image through a bare forwarder (`forwarder.py`: a plain ASGI app under the
  same server that only passes the body on): what any HTTP hop adds on this machine, so the
  gateway's own steps cost its added latency less the forwarder's;
- a cheap authenticated endpoint (`GET /v1/me`: token check, rate limit, account read) and
  `POST /v1/classify`, in requests per second per core of the gateway process (its own CPU seconds,
  from /proc, so the load generator on the same machine does not count against it).
Goals: <= 2 ms added at p50, <= 10 ms at p99, >= 1,000 authenticated requests/s per core.
Run: `make bench-gateway` (or `python benchmarks/gateway/run.py --requests 400`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import DIGITS_INPUT, digits_cnn, write_results  # noqa: E402

from kubeclassify.cli.processes import LocalProcess, free_port, start_process  # noqa: E402
from kubeclassify.cli.services import start_gateway, start_predictor, start_redis, start_seaweedfs  # noqa: E402
from kubeclassify.core.storage import ObjectStore  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def load(
    clients: int, requests: int, sends: dict[str, Callable[[httpx.AsyncClient], object]]
) -> tuple[dict[str, list[float]], float]:
    """Latencies (ms) by name of `requests` rounds shared among `clients` concurrent loops, and the
    wall time. A round sends each of `sends` once, in turn: two ways of doing the same work measured
    side by side see the same machine, even while its load drifts."""
    latencies: dict[str, list[float]] = {name: [] for name in sends}
    remaining = iter(range(requests))

    async def loop(client: httpx.AsyncClient) -> None:
        for _ in remaining:
            for name, send in sends.items():
                started = time.perf_counter()
                resp = await send(client)  # type: ignore[misc]
                latencies[name].append((time.perf_counter() - started) * 1000)
                if resp.status_code != 200:
                    raise RuntimeError(f"HTTP {resp.status_code}: {resp.text[:300]}")

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        for _ in range(min(20, requests)):  # warm connections and code paths
            for send in sends.values():
                await send(client)  # type: ignore[misc]
        started = time.perf_counter()
        await asyncio.gather(*(loop(client) for _ in range(clients)))
        return latencies, time.perf_counter() - started


def start_forwarder(predictor_url: str, log_dir: Path) -> tuple[LocalProcess, str]:
    """`forwarder.py` under uvicorn (as the gateway runs: uvloop, httptools, one process)."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(__file__).parent), "forwarder:app"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        with urllib.request.urlopen(url, timeout=2) as resp:  # refused until it listens: an OSError
            return bool(resp.status == 204)

    env = {**os.environ, "PREDICTOR_URL": predictor_url}
    return start_process("forwarder", argv, log_dir, ready, timeout=30, env=env), url


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=600, help="requests per measurement")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/gateway.json"))
    args = parser.parse_args()
    results: dict[str, object] = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        s3 = start_seaweedfs(tmp / "s3", tmp / "logs")
        redis = start_redis(tmp / "redis", tmp / "logs")
        store = ObjectStore(s3.settings())
        store.create_bucket("images")
        png = digits_cnn(tmp / "digits")[0]
        spec = {
            "apiVersion": "kubeclassify.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "digits"},
            "spec": {"model": {"uri": f"file://{tmp / 'digits'}"}, "input": DIGITS_INPUT},
        }
        (tmp / "md.json").write_text(json.dumps(spec))
        predictor = start_predictor(tmp / "md.json", tmp / "logs", "digits")
        forwarder, forwarder_url = start_forwarder(predictor.url, tmp / "logs")
        gateway = start_gateway(
            tmp / "logs",
            {
                "KUBECLASSIFY_ENVIRONMENT": "development",
                "KUBECLASSIFY_LOG_LEVEL": "WARNING",
                "KUBECLASSIFY_S3__ENDPOINT_URL": s3.endpoint_url,
                "KUBECLASSIFY_S3__ACCESS_KEY_ID": s3.access_key_id,
                "KUBECLASSIFY_S3__SECRET_ACCESS_KEY": s3.secret_access_key,
                "KUBECLASSIFY_GATEWAY__REDIS_URL": redis.url,
                "KUBECLASSIFY_GATEWAY__TOKEN_SECRET": secrets.token_urlsafe(32),
                "KUBECLASSIFY_GATEWAY__IMAGES_URI": "s3://images/",
                "KUBECLASSIFY_GATEWAY__PREDICTORS": json.dumps({"digits": predictor.url}),
                "KUBECLASSIFY_GATEWAY__DEFAULT_MODEL": "digits",
                "KUBECLASSIFY_GATEWAY__STARTING_CREDITS": str(10**9),
                "KUBECLASSIFY_GATEWAY__REGISTRATION": "open",
                "KUBECLASSIFY_GATEWAY__RATE_LIMIT_PER_MINUTE": str(10**9),
            },
        )
        password = secrets.token_urlsafe(16)
        httpx.post(f"{gateway.url}/v1/accounts", json={"username": "bench", "password": password})
        token = httpx.post(
            f"{gateway.url}/v1/auth/token", data={"username": "bench", "password": password}
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}

        def direct(client: httpx.AsyncClient) -> object:
            return client.post(
                f"{predictor.url}/v1/models/digits:predict",
                content=png,
                headers={"Content-Type": "image/png"},
            )

        def forward(client: httpx.AsyncClient) -> object:
            return client.post(
                f"{forwarder_url}/v1/models/digits:predict",
                content=png,
                headers={"Content-Type": "image/png"},
            )

        def classify(client: httpx.AsyncClient) -> object:
            files = {"file": ("digit.png", png, "image/png")}
            return client.post(f"{gateway.url}/v1/classify", files=files, headers=auth)

        def me(client: httpx.AsyncClient) -> object:
            return client.get(f"{gateway.url}/v1/me", headers=auth)

        print(f"{os.cpu_count()} CPUs; {args.requests} requests per measurement", flush=True)
        for clients in (1, 32):
            cpu_before = cpu_seconds(gateway.process.pid)
            sends = {"direct": direct, "forwarder": forward, "gateway": classify}
            rounds, _ = asyncio.run(load(clients, args.requests, sends))
            classify_cpu = cpu_seconds(gateway.process.pid) - cpu_before
            _, wall = asyncio.run(load(clients, args.requests, {"gateway": classify}))
            row = {}
            for q in (50, 99):
                d, f, g = (percentile(rounds[name], q) for name in sends)
                row[f"direct_p{q}_ms"], row[f"gateway_p{q}_ms"] = round(d, 2), round(g, 2)
                row[f"added_p{q}_ms"] = round(g - d, 2)
                row[f"forwarder_added_p{q}_ms"] = round(f - d, 2)
            row["classify_per_s"] = round(args.requests / wall, 1)
            row["classify_per_gateway_core_s"] = round(args.requests / classify_cpu, 1)
            results[f"clients_{clients}"] = row
            print(
                f"{clients:>2} client(s): predictor p50 {row['direct_p50_ms']} ms,"
                f" p99 {row['direct_p99_ms']} ms;"
                f" through the gateway p50 {row['gateway_p50_ms']} ms, p99 {row['gateway_p99_ms']} ms"
                f" -> added p50 {row['added_p50_ms']} ms, p99 {row['added_p99_ms']} ms"
                f" (a bare forwarder: {row['forwarder_added_p50_ms']} / {row['forwarder_added_p99_ms']} ms);"
                f" {row['classify_per_s']} classifications/s"
                f" ({row['classify_per_gateway_core_s']} per gateway core)",
                flush=True,
            )
        cpu_before = cpu_seconds(gateway.process.pid)
        timings, wall = asyncio.run(load(32, args.requests * 4, {"me": me}))
        me_ms = timings["me"]
        me_cpu = cpu_seconds(gateway.process.pid) - cpu_before
        results["auth"] = {
            "endpoint": "GET /v1/me",
            "per_s": round(args.requests * 4 / wall, 1),
            "per_gateway_core_s": round(args.requests * 4 / me_cpu, 1),
            "p50_ms": round(percentile(me_ms, 50), 2),
            "p99_ms": round(percentile(me_ms, 99), 2),
        }
        print(
            f"GET /v1/me, 32 clients: {results['auth']['per_s']} req/s,"  # type: ignore[index]
            f" {results['auth']['per_gateway_core_s']} req/s per gateway core"  # type: ignore[index]
            f" (goal >= 1000); p50 {results['auth']['p50_ms']} ms",  # type: ignore[index]
            flush=True,
        )
        forwarder.stop()
        for server in (gateway, predictor, redis, s3):
            server.stop()
    write_results(args.output, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
