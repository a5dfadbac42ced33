"""What the chaos tier's tests share: the e2e tier's client of the Kubernetes API emulator, the
seed, a webhook receiver, and a `World`: a namespace on the emulator with a week of digits, the
ModelDeployment that classifies them, and the operator started against it."""

from __future__ import annotations

import base64
import datetime as dt
import io
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from e2e.conftest import Operator, api_client, start_operator
from harness.kubelet import Cluster, ready_inference_service
from harness.receiver import Receiver
from PIL import Image

from kubeclassify.cli.services import PredictorServer, S3Server
from kubeclassify.core import constants as c
from kubeclassify.core.model_card import ModelCard
from kubeclassify.core.storage import ObjectStore

__all__ = ["api_client"]

TODAY = dt.datetime.now(dt.UTC).date()
DAYS = [TODAY - dt.timedelta(days=n) for n in range(7, 0, -1)]  # a missed week, up to yesterday
PER_DAY = 3


REPORT: list[str] = []


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Say what a test did (kills, deletions, restarts): shown in the run's summary, also on success."""
    return lambda line: REPORT.append(f"{request.node.name}: {line}")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORT:
        terminalreporter.section("chaos")
        for line in REPORT:
            terminalreporter.write_line(line)


@pytest.fixture
def seed(report: Callable[[str], None]) -> int:
    chosen = int(os.environ.get("KUBECLASSIFY_CHAOS_SEED") or random.SystemRandom().randrange(10**6))
    print(f"chaos seed {chosen} (KUBECLASSIFY_CHAOS_SEED={chosen} replays it)")
    report(f"seed {chosen}")
    return chosen


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def png(index: int) -> bytes:
    from sklearn.datasets import load_digits

    pixels = (load_digits().images[index] * (255.0 / 16.0)).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def stage(
    cluster: Cluster,
    store: ObjectStore,
    bucket: str,
    s3: S3Server,
    digits_model: Path,
    days: list[dt.date] = DAYS,
) -> None:
    """PER_DAY digits on each of `days` (the missed week) in a manifest, the S3 and webhook Secrets,
    and the ModelDeployment `digits` (its predictor: the test's digits predictor)."""
    rows = ["filepath,date"]
    for d, day in enumerate(days):
        for i in range(PER_DAY):
            path = f"images/{day}/{i}.png"
            store.write(f"s3://{bucket}/{path}", png(1600 + d * PER_DAY + i))
            rows.append(f"{path},{day}")
    store.write(f"s3://{bucket}/manifest.csv", ("\n".join(rows) + "\n").encode())
    keys = {"AWS_ACCESS_KEY_ID": s3.access_key_id, "AWS_SECRET_ACCESS_KEY": s3.secret_access_key}
    cluster.secret("s3", {k: v.encode() for k, v in keys.items()})
    hook = {"metadata": {"name": "hook", "labels": {c.LABEL_WEBHOOK_SECRET: "true"}}}
    cluster.core.create_namespaced_secret(
        cluster.ns, {**hook, "data": {"secret": base64.b64encode(b"k").decode()}}
    )
    card = ModelCard.model_validate_json((digits_model / "model-card.json").read_text())
    cluster.create(
        c.PLURALS[c.MODEL_DEPLOYMENT],
        {
            "apiVersion": c.API_VERSION,
            "kind": c.MODEL_DEPLOYMENT,
            "metadata": {"name": "digits"},
            "spec": {
                "model": {"uri": f"s3://{bucket}/models/digits/"},
                "input": card.input.to_k8s(),
                "storage": {"secretName": "s3", "endpoint": s3.endpoint_url},
            },
        },
    )


@dataclass(frozen=True)
class World:
    """What a chaos test runs in: the emulator's namespace, storage and its bucket, the S3 server,
    the digits model and its predictor, and a webhook receiver."""

    kubeconfig: Path
    cluster: Cluster
    store: ObjectStore
    bucket: str
    s3: S3Server
    digits_model: Path
    predictor: PredictorServer
    receiver: Receiver

    @property
    def namespace(self) -> str:
        return self.cluster.ns

    def stage(self, days: list[dt.date] = DAYS) -> None:
        """`stage` the week of digits, and the digits InferenceService ready at the predictor."""
        stage(self.cluster, self.store, self.bucket, self.s3, self.digits_model, days)
        ready_inference_service(self.cluster.custom, self.namespace, "digits", self.predictor.url)

    def start_operator(self, home: Path, **settings: Any) -> Operator:
        """The operator on this namespace, webhooks to loopback allowed; `settings` add or override."""
        allowed = {"namespaces": f'["{self.namespace}"]', "webhook_allowed_networks": '["127.0.0.0/8"]'}
        return start_operator(self.kubeconfig, home, **{**allowed, **settings})

    def batch(self, name: str, **spec: Any) -> dict[str, Any]:
        return batch(name, self.bucket, self.receiver.url, **spec)


@pytest.fixture
def world(
    kube_api: Any,
    api_client: Any,
    namespace: str,
    store: ObjectStore,
    bucket: str,
    s3_server: S3Server,
    digits_model: Path,
    digits_predictor: PredictorServer,
    receiver: Receiver,
) -> World:
    cluster = Cluster(api_client, namespace)
    return World(
        kube_api.kubeconfig, cluster, store, bucket, s3_server, digits_model, digits_predictor, receiver
    )


def batch(name: str, bucket: str, hook: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.CLASSIFICATION_BATCH,
        "metadata": {"name": name},
        "spec": {
            "modelRef": {"name": "digits"},
            "input": {"manifest": {"uri": f"s3://{bucket}/manifest.csv", "root": f"s3://{bucket}/"}},
            "output": {"uri": f"s3://{bucket}/results/{name}/{{date}}/predictions.csv"},
            "mode": "remote",
            "webhook": {"url": hook, "secretName": "hook"},
            **spec,
        },
    }
