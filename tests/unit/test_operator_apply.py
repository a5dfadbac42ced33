"""The operator writes the objects it owns with server-side apply: each request as it goes over the
wire (content type, field manager, force, the body), captured by a local HTTP server. How an API
server merges applies from several managers, and their conflicts, is not checked here: the API
emulator takes an apply as a merge for one manager."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes
import pytest

from kubeclassify.core.resources.classification_batch import ClassificationBatch
from kubeclassify.operator.builders.batch import tick_cronjob
from kubeclassify.operator.config import OperatorConfig
from kubeclassify.operator.kube import FIELD_MANAGER, ClusterApi


class Recorder:
    """Answers every PATCH with its own body, and keeps (method, path, query, headers, body).

    It answers `200 OK`, or `201 Created` while `creates` is set (an apply to an object that did
    not exist, as the API server answers it)."""

    def __init__(self) -> None:
        self.creates = False
        self.requests: list[tuple[str, str, dict[str, list[str]], dict[str, str], Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_PATCH(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                url = urlsplit(self.path)
                outer.requests.append(
                    ("PATCH", url.path, parse_qs(url.query), dict(self.headers), json.loads(raw))
                )
                self.send_response(201 if outer.creates else 200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def recorded() -> Iterator[tuple[ClusterApi, Recorder]]:
    recorder = Recorder()
    cfg = kubernetes.client.Configuration()
    cfg.host = recorder.url
    yield ClusterApi(kubernetes.client.ApiClient(cfg)), recorder
    recorder.server.shutdown()


def assert_applied(request: tuple[str, str, dict[str, list[str]], dict[str, str], Any], path: str) -> None:
    method, got_path, query, headers, _ = request
    assert (method, got_path) == ("PATCH", path)
    assert headers["Content-Type"] == "application/apply-patch+yaml"
    assert query == {"fieldManager": [FIELD_MANAGER], "force": ["true"]}


def test_an_inference_service_is_applied_whole_as_the_operators_field_manager(
    recorded: tuple[ClusterApi, Recorder],
) -> None:
    kube, recorder = recorded
    desired = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "digits-predictor", "labels": {"a": "b"}},
        "spec": {"predictor": {"minReplicas": 1}},
    }
    assert kube.apply_inference_service("ml", desired) == desired
    [request] = recorder.requests
    assert_applied(
        request, "/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices/digits-predictor"
    )
    assert request[4] == desired, "the whole desired object, kind and apiVersion included, nothing else"


def test_an_inference_service_the_apply_creates_is_returned_too(
    recorded: tuple[ClusterApi, Recorder],
) -> None:
    """The API server answers an apply that creates the object with 201 Created, a code the
    Kubernetes client's custom-object patch does not decode (it returned None)."""
    kube, recorder = recorded
    recorder.creates = True
    desired = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "digits", "namespace": "ml"},
        "spec": {"predictor": {"minReplicas": 1}},
    }
    assert kube.apply_inference_service("ml", desired) == desired


def test_the_tick_cronjob_is_applied_as_built(recorded: tuple[ClusterApi, Recorder]) -> None:
    kube, recorder = recorded
    cb = ClassificationBatch.model_validate(
        {
            "metadata": {"name": "daily", "namespace": "ml"},
            "spec": {
                "modelRef": {"name": "digits"},
                "input": {"manifest": {"uri": "s3://bucket/m.csv", "root": "s3://bucket/"}},
                "output": {"uri": "s3://bucket/out/{date}/p.csv"},
                "schedule": {"cron": "@daily"},
            },
        }
    )
    cronjob = tick_cronjob(cb, OperatorConfig())
    kube.apply("ml", cronjob)
    [request] = recorder.requests
    assert_applied(request, f"/apis/batch/v1/namespaces/ml/cronjobs/{cronjob['metadata']['name']}")
    assert request[4] == json.loads(json.dumps(cronjob))
