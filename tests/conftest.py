"""Session fixtures that start real services on free ports (SeaweedFS, redis-server, the
Kubernetes API emulator), with the same launchers `make demo` uses, and stop them by PID."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from harness.clock import follow_environment
from harness.kubeapi_launch import ROOT, kubeconfig_for, start_kube_api

from kubeclassify.cli.processes import LocalProcess
from kubeclassify.cli.services import (
    PredictorServer,
    RedisServer,
    S3Server,
    start_predictor,
    start_redis,
    start_seaweedfs,
)
from kubeclassify.core.constants import API_VERSION, MODEL_DEPLOYMENT
from kubeclassify.core.model_card import ModelCard
from kubeclassify.core.settings import S3Settings
from kubeclassify.core.storage import ObjectStore

TIERS = ("unit", "integration", "chart", "e2e", "chaos")


def pytest_configure(config: pytest.Config) -> None:
    """With KUBECLASSIFY_TEST_DAYS_AHEAD set, this run and every process it starts live that many
    days ahead (`harness.clock`)."""
    follow_environment()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Each phase's report on its test (`item.report_call`...), for fixtures that keep artefacts
    of a failed test (the web page's screenshots)."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test's tier is the folder it lives in (tests/unit, tests/integration...)."""
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in TIERS:
            item.add_marker(getattr(pytest.mark, parts[0]))


# --- S3 -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    base = tmp_path_factory.mktemp("seaweedfs")
    server = start_seaweedfs(base / "data", base / "logs")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_settings(s3_server: S3Server) -> S3Settings:
    return s3_server.settings().model_copy(update={"max_attempts": 2})


@pytest.fixture(scope="session")
def store(s3_settings: S3Settings) -> ObjectStore:
    return ObjectStore(s3_settings)


@pytest.fixture
def bucket(store: ObjectStore) -> str:
    """A fresh, empty bucket for one test."""
    name = f"test-{secrets.token_hex(6)}"
    store.create_bucket(name)
    return name


# --- The digits model ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test model of the whole project: `kubeclassify train digits`, exported to a folder."""
    from kubeclassify.core.cli import main

    out = tmp_path_factory.mktemp("models") / "digits"
    assert main(["train", "digits", "--output", str(out), "--name", "digits"]) == 0
    return out


# --- Redis --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    base = tmp_path_factory.mktemp("redis")
    server = start_redis(base / "data", base / "logs")
    yield server
    server.stop()


# --- Kubernetes API emulator ---------------------------------------------------------------------


@dataclass
class KubeApi:
    """The emulator process and a kubeconfig that points at it."""

    process: LocalProcess
    url: str
    kubeconfig: Path


@pytest.fixture(scope="session")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApi]:
    base = tmp_path_factory.mktemp("kubeapi")
    server = start_kube_api(base)
    yield KubeApi(server.process, server.url, kubeconfig_for(server.url, base / "kubeconfig"))
    server.stop()


@pytest.fixture
def namespace() -> str:
    """A namespace of this test's own, so tests sharing the emulator never see each other's objects."""
    return f"t-{secrets.token_hex(4)}"


@pytest.fixture(scope="session")
def digits_predictor(
    digits_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PredictorServer]:
    """The real predictor serving the digits model as ModelDeployment `digits`, for gateway tests."""
    base = tmp_path_factory.mktemp("digits-predictor")
    card = ModelCard.model_validate_json((digits_model / "model-card.json").read_text())
    spec = {
        "apiVersion": API_VERSION,
        "kind": MODEL_DEPLOYMENT,
        "metadata": {"name": "digits"},
        "spec": {"model": {"uri": f"file://{digits_model}"}, "input": card.input.to_k8s()},
    }
    (base / "md.yaml").write_text(yaml.safe_dump(spec))
    server = start_predictor(base / "md.yaml", base, "digits")
    yield server
    server.stop()
