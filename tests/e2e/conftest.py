from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import clock
from kubernetes import client, config

from kubeclassify.cli.processes import LocalProcess, free_ports, port_open, start_process


@pytest.fixture(scope="session")
def api_client(kube_api) -> Iterator[client.ApiClient]:  # type: ignore[no-untyped-def]
    api = config.new_client_from_config(config_file=str(kube_api.kubeconfig))
    yield api
    api.close()


@pytest.fixture
def custom(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


@pytest.fixture
def batch_api(api_client: client.ApiClient) -> client.BatchV1Api:
    return client.BatchV1Api(api_client)


@dataclass
class Operator:
    """The operator running as `kubeclassify operator run -A` against the emulator."""

    process: LocalProcess
    metrics_url: str
    liveness_url: str
    log: Path


# What the tests' resources may name unless a test sets its own policy: any bucket, Secret and
# ServiceAccount, and files (these tests' models are local folders).
OPEN_POLICY = json.dumps(
    {
        "default": {
            "read": ["s3://", "pvc://", "file:///"],
            "write": ["s3://", "file:///"],
            "secrets": ["*"],
            "serviceAccounts": ["*"],
        },
        "allowFile": True,
    }
)


def start_operator(
    kubeconfig: Path, log_dir: Path, now: dt.datetime | None = None, **settings: str
) -> Operator:
    """Start the real operator process; ready once its watches on both kinds are running. With
    `now`, its clock starts at that instant (`harness.clock`)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    metrics_port, liveness_port = free_ports(2)
    env = dict(
        os.environ,
        KUBECONFIG=str(kubeconfig),
        KUBECLASSIFY_LOG_LEVEL="DEBUG",
        KUBECLASSIFY_OPERATOR__METRICS_PORT=str(metrics_port),
        KUBECLASSIFY_OPERATOR__LIVENESS_PORT=str(liveness_port),
        KUBECLASSIFY_OPERATOR__RETRY_DELAY="2",
        KUBECLASSIFY_OPERATOR__PROGRESS_SECONDS="1",
        KUBECLASSIFY_OPERATOR__INFERENCE_IMAGE="registry.example/kubeclassify/inference:test",
        **{f"KUBECLASSIFY_OPERATOR__{k.upper()}": v for k, v in {"policy": OPEN_POLICY, **settings}.items()},
        **(clock.set_to(now) if now is not None else {}),
    )
    log = log_dir / "operator.log"

    def watching() -> bool:
        text = log.read_text() if log.exists() else ""
        return port_open("127.0.0.1", liveness_port) and all(
            f"watch-stream for {plural}" in text for plural in ("modeldeployments", "inferenceservices")
        )

    argv = [sys.executable, "-m", "kubeclassify.core.cli", "operator", "run"]
    if "namespaces" not in settings:
        argv.append("--all-namespaces")
    process = start_process("operator", argv, log_dir, watching, timeout=60, env=env)
    return Operator(
        process,
        f"http://127.0.0.1:{metrics_port}/metrics",
        f"http://127.0.0.1:{liveness_port}/healthz",
        log,
    )


@pytest.fixture(scope="module")
def operator(kube_api, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:  # type: ignore[no-untyped-def]
    running = start_operator(kube_api.kubeconfig, tmp_path_factory.mktemp("operator"))
    yield running
    running.process.stop()
