"""The gateway's Prometheus metrics: requests, latencies, credits spent, classifications by label."""

from __future__ import annotations

import os
import tempfile

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

REQUESTS = Counter(
    "kubeclassify_gateway_requests_total",
    "Requests, by route template, method and status.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "kubeclassify_gateway_request_seconds",
    "Time to answer, by route template.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CREDITS = Counter("kubeclassify_gateway_credits_spent_total", "Credits spent on classifications.")
CLASSIFIED = Counter(
    "kubeclassify_gateway_classifications_total", "Images classified, by model and label.", ["model", "label"]
)


def serve(port: int, workers: int) -> None:
    """/metrics on `port`, from a thread of this process, before uvicorn starts serving the API.

    One worker runs in this process, so its samples are this process's. Several workers are
    processes of their own: each writes its samples to files in a fresh folder (prometheus_client's
    multiprocess mode, which they pick up from the environment they inherit) and this process adds
    them up at every scrape."""
    registry = REGISTRY
    if workers > 1:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="kubeclassify-metrics-")
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    start_http_server(port, registry=registry)
