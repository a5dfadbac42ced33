"""How many CPUs the batch worker believes it has: a container's CPU limit caps the affinity mask."""

from __future__ import annotations

import pytest

from kubeclassify.inference import threads


@pytest.mark.parametrize(
    ("cpu_max", "fallback", "expected"),
    [
        ("max 100000\n", 8, 8),  # no limit
        ("200000 100000\n", 8, 2),  # limits.cpu: 2
        ("150000 100000\n", 8, 2),  # 1.5 CPUs: two threads, each busy part of the time
        ("50000 100000\n", 8, 1),  # below one CPU: still one
        ("1600000 100000\n", 4, 4),  # a limit above the CPUs there are
        (None, 3, 3),  # no cgroup v2 file
        ("garbage", 3, 3),
    ],
)
def test_cpus_from_cgroup(cpu_max: str | None, fallback: int, expected: int) -> None:
    assert threads.cpus_from_cgroup(cpu_max, fallback) == expected


def test_requested_streams_are_kept() -> None:
    assert threads.model_streams(3) == 3


def test_automatic_streams_one_per_cpu_up_to_four(monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorflow as tf

    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    for cpus, streams in ((1, 1), (2, 2), (3, 3), (16, 4)):
        monkeypatch.setattr(threads, "available_cpus", lambda cpus=cpus: cpus)
        assert threads.model_streams(0) == streams
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"])
    assert threads.model_streams(0) == 1, "one call at a time keeps a GPU busy"
