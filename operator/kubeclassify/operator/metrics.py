"""The operator's Prometheus metrics: reconciles, errors, durations, and objects by phase."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "kubeclassify_operator_reconciles_total", "Reconciles, by kind and result.", ["kind", "result"]
)
ERRORS = Counter(
    "kubeclassify_operator_reconcile_errors_total",
    "Failed reconciles, by kind and reason.",
    ["kind", "reason"],
)
DURATION = Histogram(
    "kubeclassify_operator_reconcile_seconds",
    "Time to reconcile one object.",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
OBJECTS = Gauge("kubeclassify_operator_objects", "Objects by kind and phase.", ["kind", "phase"])

_phases: dict[tuple[str, str], str] = {}


@contextmanager
def reconciling(kind: str) -> Iterator[None]:
    """Count and time one reconcile; an exception counts as an error with its class as the reason."""
    started = time.perf_counter()
    try:
        yield
    except Exception as e:
        RECONCILES.labels(kind, "error").inc()
        ERRORS.labels(kind, getattr(e, "reason", None) or type(e).__name__).inc()
        raise
    else:
        RECONCILES.labels(kind, "ok").inc()
    finally:
        DURATION.labels(kind).observe(time.perf_counter() - started)


def set_phase(kind: str, key: str, phase: str | None) -> None:
    """Record an object's phase (None when it is gone) and update the per-phase counts."""
    old = _phases.pop((kind, key), None)
    if old is not None:
        OBJECTS.labels(kind, old).dec()
    if phase is not None:
        _phases[(kind, key)] = phase
        OBJECTS.labels(kind, phase).inc()


BATCH_RUNS = Counter("kubeclassify_batch_runs_total", "Finished batch runs, by result.", ["result"])
BATCH_IMAGES = Counter(
    "kubeclassify_batch_images_total", "Images of finished batch runs, by outcome.", ["outcome"]
)
BATCH_PROGRESS = Gauge(
    "kubeclassify_batch_progress_ratio",
    "Share of a running batch's images done (shards report when they finish).",
    ["namespace", "batch"],
)


def batch_progress(namespace: str, batch: str, done: int, total: int) -> None:
    """Record how far a running batch has got."""
    BATCH_PROGRESS.labels(namespace, batch).set(done / total if total else 0.0)


def batch_finished(namespace: str, batch: str, result: str, classified: int, failed: int) -> None:
    """Count a finished run and its images; its progress series goes away."""
    BATCH_RUNS.labels(result).inc()
    BATCH_IMAGES.labels("classified").inc(classified)
    BATCH_IMAGES.labels("failed").inc(failed)
    with suppress(KeyError):
        BATCH_PROGRESS.remove(namespace, batch)
