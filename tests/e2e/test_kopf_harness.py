"""Kopf works against the emulator with our CRDs: a handler sees a new ClassificationBatch once,
keeps its progress in annotations (the status schema stays ours), posts an Event that the API
receives, and a restart repeats nothing."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client

from kubeclassify.cli.processes import LocalProcess, start_process

GROUP, VERSION, PLURAL = "kubeclassify.io", "v1alpha1", "classificationbatches"
HERE = Path(__file__).resolve().parent


def start_kopf(kubeconfig: Path, probe_log: Path, log_dir: Path) -> LocalProcess:
    env = dict(os.environ, KUBECONFIG=str(kubeconfig), PROBE_LOG=str(probe_log))
    argv = [
        sys.executable,
        "-m",
        "kopf",
        "run",
        "--standalone",
        "--all-namespaces",
        "--verbose",
        str(HERE / "kopf_probe.py"),
    ]
    log = log_dir / "kopf.log"
    # Ready once Kopf has started watching our resource.
    return start_process(
        "kopf", argv, log_dir, lambda: log.exists() and PLURAL in log.read_text(), timeout=60, env=env
    )


def wait_for(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def calls(probe: Path, namespace: str) -> list[str]:
    """The handler calls for this test's namespace (Kopf sees every test's objects)."""
    return [line for line in probe.read_text().splitlines() if line.startswith(f"{namespace}/")]


def test_handler_runs_exactly_once_and_survives_restart(
    kube_api,
    custom: client.CustomObjectsApi,
    api_client: client.ApiClient,  # type: ignore[no-untyped-def]
    namespace: str,
    tmp_path: Path,
) -> None:
    probe = tmp_path / "calls.txt"
    probe.touch()
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ClassificationBatch",
        "metadata": {"name": "once"},
        "spec": {
            "modelRef": {"name": "digits"},
            "input": {"prefix": {"uri": "s3://data/images/"}},
            "output": {"uri": "s3://results/all.csv"},
        },
    }
    kopf = start_kopf(kube_api.kubeconfig, probe, tmp_path)
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        wait_for(lambda: calls(probe, namespace))
        obj = wait_for(
            lambda: (
                (o := custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "once"))[
                    "metadata"
                ].get("annotations")
                and o
            )
        )
        events = wait_for(lambda: client.CoreV1Api(api_client).list_namespaced_event(namespace).items)
        time.sleep(3)  # room for a wrongly repeated call
    finally:
        kopf.stop()
    assert [(e.reason, e.involved_object.kind, e.involved_object.name) for e in events] == [
        ("Recorded", "ClassificationBatch", "once")
    ]
    assert calls(probe, namespace) == [f"{namespace}/once"]
    annotations = obj["metadata"]["annotations"]
    assert f"kopf.{GROUP}/last-handled-configuration" in annotations
    assert "status" not in obj or "kopf" not in obj["status"], "Kopf must keep its progress out of status"

    restarted = start_kopf(kube_api.kubeconfig, probe, tmp_path / "again")
    try:
        time.sleep(3)
    finally:
        restarted.stop()
    assert calls(probe, namespace) == [f"{namespace}/once"], "a restart must not repeat the handler"
