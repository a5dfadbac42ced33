"""The gateway's Prometheus metrics: requests, latencies, credits spent, classifications by label."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
