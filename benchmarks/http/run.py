"""HTTP client benchmark: what one call to a predictor costs the caller in CPU, per library, in one run.

A stand-in predictor (aiohttp's server, its own process) answers a V1 predict with a fixed body; the
client posts a 12 KB body, 32 at a time, and reads the JSON answer: aiohttp and httpx (async, as the
gateway calls), then httpx and urllib3 (sync, from 32 threads). Each client runs twice, in turn, so
all see the same machine while its load drifts. Prints requests/s and client CPU microseconds per
request (this process's CPU time), and each library's CPU over aiohttp's. Then object storage's GET:
the presigned URL on a pooled urllib3 connection that `ObjectStore.read` uses, against botocore's
`get_object`, over 400 objects of 40 KB in a local SeaweedFS (CPU ms per object, best of three).
Last, the request rate: the gateway counts it in the sign-in's one Redis script (a sliding-window
counter); the `limits` library's sliding-window limiter would be a second round trip per request.
Both against a local redis-server, in turn, best of three (CPU µs per request).
Run: `make bench-http`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import httpx
import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import write_results  # noqa: E402

from kubeclassify.cli.processes import free_port, port_open  # noqa: E402
from kubeclassify.cli.services import start_seaweedfs  # noqa: E402
from kubeclassify.core.storage import ObjectStore  # noqa: E402

SERVER = r"""
import sys
from aiohttp import web
ANSWER = b'{"predictions": [{"label": "7", "score": 0.9, "top_k": [{"label": "7", "score": 0.9}]}]}'
async def predict(request):
    await request.read()
    return web.Response(body=ANSWER, content_type="application/json")
app = web.Application()
app.router.add_post("/v1/models/m:predict", predict)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""
BODY = os.urandom(12_000)
HEADERS = {"Content-Type": "image/jpeg"}
CONCURRENCY = 32


async def with_aiohttp(url: str, n: int) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one() -> None:
            async with gate, session.post(url, data=BODY, headers=HEADERS) as resp:
                json.loads(await resp.read())

        await asyncio.gather(*(one() for _ in range(n)))


async def with_httpx(url: str, n: int) -> None:
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits) as client:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one() -> None:
            async with gate:
                json.loads((await client.post(url, content=BODY, headers=HEADERS)).content)

        await asyncio.gather(*(one() for _ in range(n)))


def threaded(post: Callable[[], object], n: int) -> None:
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(lambda _: post(), range(n)))


def with_httpx_sync(url: str, n: int) -> None:
    with httpx.Client(limits=httpx.Limits(max_connections=CONCURRENCY)) as client:
        threaded(lambda: json.loads(client.post(url, content=BODY, headers=HEADERS).content), n)


def with_urllib3(url: str, n: int) -> None:
    pool = urllib3.PoolManager(maxsize=CONCURRENCY)
    threaded(lambda: json.loads(pool.request("POST", url, body=BODY, headers=HEADERS).data), n)


CLIENTS: dict[str, Callable[[str, int], None]] = {
    "aiohttp": lambda url, n: asyncio.run(with_aiohttp(url, n)),
    "httpx (async)": lambda url, n: asyncio.run(with_httpx(url, n)),
    "httpx (sync, threads)": with_httpx_sync,
    "urllib3 (sync, threads)": with_urllib3,
}


def measure(client: Callable[[str, int], None], url: str, n: int) -> tuple[float, float]:
    """(requests/s, client CPU µs per request), after a warm-up of the same client."""
    client(url, 50)
    started, cpu = time.perf_counter(), time.process_time()
    client(url, n)
    return n / (time.perf_counter() - started), 1e6 * (time.process_time() - cpu) / n


def object_gets(objects: int = 400, size: int = 40_000) -> dict[str, float]:
    """CPU ms per object GET: the presigned URL `ObjectStore.read` sends, and botocore's get_object."""
    with tempfile.TemporaryDirectory() as tmp:
        s3 = start_seaweedfs(Path(tmp) / "s3", Path(tmp) / "logs")
        try:
            settings = s3.settings()
            store = ObjectStore(settings)
            store.create_bucket("bench")
            keys = [f"images/{i:05d}.jpg" for i in range(objects)]
            blob = os.urandom(size)
            for key in keys:
                store.write(f"s3://bench/{key}", blob)
            ways: dict[str, Callable[[str], object]] = {
                "presigned urllib3 (ObjectStore.read)": lambda key: store.read(f"s3://bench/{key}"),
                "botocore get_object": lambda key: store.s3.client.get_object(Bucket="bench", Key=key)[
                    "Body"
                ].read(),
            }
            best: dict[str, float] = {}
            for _ in range(3):
                for name, get in ways.items():
                    cpu = time.process_time()
                    for key in keys:
                        get(key)
                    spent = 1000 * (time.process_time() - cpu) / objects
                    best[name] = min(best.get(name, spent), spent)
            return best
        finally:
            s3.stop()


def rate_limits(requests: int = 3000) -> dict[str, float]:
    """CPU µs per signed-in request: the rate counted in the sign-in script, or by `limits` beside it."""
    from limits import parse
    from limits.aio.storage import RedisStorage
    from limits.aio.strategies import SlidingWindowCounterRateLimiter
    from redis.asyncio import Redis

    from kubeclassify.cli.services import start_redis
    from kubeclassify.gateway.accounts import Accounts

    with tempfile.TemporaryDirectory() as tmp:
        server = start_redis(Path(tmp) / "data", Path(tmp))
        try:

            async def run() -> dict[str, float]:
                accounts = Accounts(Redis.from_url(server.url, decode_responses=True))
                await accounts.create_user("ann", "not-a-hash", "user", 0)
                limiter = SlidingWindowCounterRateLimiter(
                    RedisStorage(f"async+{server.url}", implementation="redispy")
                )
                rate = parse(f"{10 * requests}/minute")

                async def in_script() -> None:
                    await accounts.signed_in("ann", 10 * requests)

                async def with_limits() -> None:
                    await accounts.signed_in("ann", 10 * requests)
                    await limiter.hit(rate, "ann")

                ways = {"in the sign-in script": in_script, "limits, a second round trip": with_limits}
                best: dict[str, float] = {}
                for _ in range(3):
                    for name, way in ways.items():
                        cpu = time.process_time()
                        for _ in range(requests):
                            await way()
                        used = (time.process_time() - cpu) / requests * 1e6
                        best[name] = min(best.get(name, used), used)
                return best

            return asyncio.run(run())
        finally:
            server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000, help="per client and round (%(default)s)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/http.json"))
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    try:
        while not port_open("127.0.0.1", port):
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/v1/models/m:predict"
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in CLIENTS}
        for _ in range(2):
            for name, client in CLIENTS.items():
                runs[name].append(measure(client, url, args.requests))
    finally:
        server.kill()
        server.wait()
    base = sum(cpu for _, cpu in runs["aiohttp"]) / 2
    results: dict[str, object] = {"cpus": os.cpu_count(), "requests": args.requests}
    print(f"{'client':24s} {'req/s':>8s} {'CPU µs/request':>15s} {'CPU / aiohttp':>13s}")
    for name, both in runs.items():
        rate, cpu = sum(r for r, _ in both) / 2, sum(c for _, c in both) / 2
        print(f"{name:24s} {rate:8.0f} {cpu:15.0f} {cpu / base:13.1f}")
        results[name] = {
            "requests_per_s": round(rate),
            "cpu_us_per_request": round(cpu),
            "cpu_over_aiohttp": round(cpu / base, 2),
        }
    gets = object_gets()
    baseline = gets["presigned urllib3 (ObjectStore.read)"]
    for name, ms in gets.items():
        print(f"{name:38s} {ms:.2f} CPU ms per 40 KB object ({ms / baseline:.1f}x)")
    results["object_get_cpu_ms"] = {name: round(ms, 2) for name, ms in gets.items()}
    rates = rate_limits()
    baseline = rates["in the sign-in script"]
    for name, us in rates.items():
        print(f"request rate {name:27s} {us:.0f} CPU µs per signed-in request ({us / baseline:.2f}x)")
    results["rate_limit_cpu_us"] = {name: round(us) for name, us in rates.items()}
    write_results(args.output, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
