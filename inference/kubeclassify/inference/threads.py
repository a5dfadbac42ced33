"""How many CPUs this process may use, and TensorFlow's thread pools for concurrent model calls.

On a CPU, one model call spread over every core stalls whenever one of its threads is preempted
(by decoding, say): each parallel op waits for its slowest shard. The batch worker instead runs
several model calls at once, each on its share of the cores (one core each on small machines),
which keeps the cores busy between and during ops and loses only the CPU time other work takes.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

log = logging.getLogger(__name__)
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def cpus_from_cgroup(cpu_max: str | None, fallback: int) -> int:
    """The CPUs a cgroup v2 `cpu.max` ("QUOTA PERIOD" or "max PERIOD") allows, at most `fallback`."""
    if cpu_max:
        quota, _, period = cpu_max.strip().partition(" ")
        if quota != "max" and quota.isdigit() and period.isdigit() and int(period) > 0:
            return max(1, min(fallback, math.ceil(int(quota) / int(period))))
    return fallback


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a container's CPU limit."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        cpu_max = CGROUP_CPU_MAX.read_text()
    except OSError:
        cpu_max = None
    return cpus_from_cgroup(cpu_max, affinity)


MAX_AUTO_STREAMS = 4  # more calls at once hold more batches in memory for little more speed


def model_streams(requested: int) -> int:
    """Concurrent model calls: `requested`, or with 0, one per CPU up to four without a GPU (their
    threads share the CPUs), and one with one."""
    if requested > 0:
        return requested
    import tensorflow as tf

    return 1 if tf.config.list_physical_devices("GPU") else min(available_cpus(), MAX_AUTO_STREAMS)


def configure(streams: int) -> bool:
    """Size TensorFlow's pools for `streams` concurrent calls on the CPU; False when it is too late.

    TensorFlow fixes its pools when it first runs an op; a process that already has (a test, a
    benchmark that built its model first) keeps the defaults, which are correct, only slower."""
    import tensorflow as tf

    if streams <= 1 or tf.config.list_physical_devices("GPU"):
        return False
    try:
        tf.config.threading.set_intra_op_parallelism_threads(max(1, available_cpus() // streams))
        tf.config.threading.set_inter_op_parallelism_threads(streams)
    except RuntimeError:
        log.info("TensorFlow already started: its thread pools keep their sizes")
        return False
    return True
