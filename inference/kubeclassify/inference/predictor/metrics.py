"""Prometheus metrics of the predictor, served on KServe's own /metrics endpoint."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "kubeclassify_predictor_requests_total",
    "Inference requests, by protocol and outcome.",
    ["model", "protocol", "outcome"],
)
REQUEST_SECONDS = Histogram(
    "kubeclassify_predictor_request_seconds",
    "Time from a request's arrival at the model to its answer.",
    ["model", "protocol"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10),
)
IMAGES = Counter("kubeclassify_predictor_images_total", "Images classified.", ["model"])
BATCH_SIZE = Histogram(
    "kubeclassify_predictor_batch_size",
    "Images in each model call (before padding).",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
QUEUE_SECONDS = Histogram(
    "kubeclassify_predictor_queue_seconds",
    "Time a request waited for its model call.",
    ["model"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1),
)
