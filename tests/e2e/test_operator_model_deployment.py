"""The real operator (`kubeclassify operator run`) reconciles ModelDeployments against the emulator:
an InferenceService appears, its readiness (set as KServe would) comes back as status and Events,
a changed model goes out as a canary and is promoted, bad specs and missing Secrets become
conditions, and restarts and deletions leave exactly what they should."""

from __future__ import annotations

import time
import urllib.request
from typing import Any

import pytest
from e2e.conftest import Operator, start_operator
from harness.kubeapi_launch import KSERVE_CRD
from harness.schemas import load_crds, schema_errors
from harness.wait import wait_for, wait_for_event
from kubernetes import client

from kubeclassify.core import constants as c

GROUP, VERSION, PLURAL = c.GROUP, c.VERSION, c.PLURALS[c.MODEL_DEPLOYMENT]
ISVC = ("serving.kserve.io", "v1beta1")
KSERVE = load_crds(KSERVE_CRD)


def model_deployment(name: str, uri: str = "s3://models/digits/v1/", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": uri},
            "input": {"height": 32, "width": 32, "channels": 1, "colorMode": "grayscale"},
            **spec,
        },
    }


class Cluster:
    """What a test reads and writes in its namespace."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.ns = namespace

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, body)

    def md(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name, {"spec": spec})

    def isvcs(self) -> list[dict[str, Any]]:
        return self.custom.list_namespaced_custom_object(*ISVC, self.ns, "inferenceservices")["items"]

    def isvc(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(*ISVC, self.ns, "inferenceservices", name)

    def kserve_reports(self, name: str, **status: Any) -> None:
        """Set the InferenceService's status as KServe's controller would, for its current generation."""
        generation = self.isvc(name)["metadata"]["generation"]
        body = {"status": {"observedGeneration": generation, **status}}
        self.custom.patch_namespaced_custom_object_status(*ISVC, self.ns, "inferenceservices", name, body)

    def events(self, name: str) -> list[tuple[str, str]]:
        return [
            (e.type, e.reason)
            for e in self.core.list_namespaced_event(self.ns).items
            if e.involved_object.name == name and e.involved_object.kind == "ModelDeployment"
        ]


def ready(url: str, **extra: Any) -> dict[str, Any]:
    return {"url": url, "conditions": [{"type": "Ready", "status": "True"}], **extra}


def phase(cluster: Cluster, name: str, want: str) -> dict[str, Any]:
    return wait_for(lambda: (md := cluster.md(name))["status"]["phase"] == want and md, what=f"phase {want}")


def served_uris(isvc: dict[str, Any]) -> list[str]:
    spec = isvc["spec"]
    predictors = [spec["predictor"], *[c["predictor"] for c in spec.get("canary", [])]]
    return [
        next(e["value"] for e in p["containers"][0]["env"] if e["name"] == "STORAGE_URI") for p in predictors
    ]


@pytest.fixture
def cluster(api_client: client.ApiClient, namespace: str) -> Cluster:
    return Cluster(api_client, namespace)


def test_a_model_deployment_is_served_then_canaried_and_promoted(
    operator: Operator, cluster: Cluster
) -> None:
    created = cluster.create(model_deployment("digits", canary={"trafficPercent": 20}))
    isvc = wait_for(lambda: cluster.isvcs(), what="an InferenceService")[0]
    assert isvc["metadata"]["name"] == "digits"
    assert isvc["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
    assert schema_errors({k: isvc[k] for k in ("apiVersion", "kind", "metadata", "spec")}, KSERVE) == []
    assert served_uris(isvc) == ["s3://models/digits/v1/"], "the first model has no canary to share with"
    assert phase(cluster, "digits", "Pending")["status"]["inferenceService"] == "digits"

    cluster.kserve_reports(
        "digits",
        **ready("http://digits.ns.example.com", address={"url": "http://digits.ns.svc.cluster.local"}),
    )
    md = phase(cluster, "digits", "Ready")
    assert md["status"]["url"] == "http://digits.ns.svc.cluster.local"
    assert md["status"]["externalUrl"] == "http://digits.ns.example.com"
    assert md["status"]["observedGeneration"] == md["metadata"]["generation"]
    wait_for_event(lambda: cluster.events("digits"), ("Normal", "InferenceServiceReady"))

    cluster.patch_spec("digits", {"model": {"uri": "s3://models/digits/v2/"}})
    isvc = wait_for(
        lambda: (i := cluster.isvc("digits")).get("spec", {}).get("canary") and i, what="a canary"
    )
    assert served_uris(isvc) == ["s3://models/digits/v1/", "s3://models/digits/v2/"]
    assert isvc["spec"]["canary"][0]["trafficPercent"] == 20
    cluster.kserve_reports(
        "digits",
        **ready(
            "http://digits.ns.example.com",
            canaryStatuses=[{"name": "c", "ready": True, "trafficPercent": 20}],
        ),
    )
    md = phase(cluster, "digits", "Canary")
    assert (
        md["status"]["stableVersion"],
        md["status"]["canaryVersion"],
        md["status"]["canaryTrafficPercent"],
    ) == (
        "s3://models/digits/v1/",
        "s3://models/digits/v2/",
        20,
    )

    cluster.patch_spec("digits", {"canary": {"trafficPercent": 100}})
    isvc = wait_for(lambda: "canary" not in (i := cluster.isvc("digits"))["spec"] and i, what="the promotion")
    assert served_uris(isvc) == ["s3://models/digits/v2/"]
    cluster.kserve_reports("digits", **ready("http://digits.ns.example.com"))
    md = phase(cluster, "digits", "Ready")
    assert md["status"]["stableVersion"] == "s3://models/digits/v2/"
    assert "canaryVersion" not in md["status"]
    assert len(cluster.isvcs()) == 1

    with urllib.request.urlopen(operator.metrics_url, timeout=5) as resp:
        metrics = resp.read().decode()
    assert 'kubeclassify_operator_reconciles_total{kind="ModelDeployment",result="ok"}' in metrics
    assert "kubeclassify_operator_reconcile_seconds_bucket" in metrics
    with urllib.request.urlopen(operator.liveness_url, timeout=5) as resp:
        assert resp.status == 200


def test_a_model_that_fails_to_load_fails_the_deployment(operator: Operator, cluster: Cluster) -> None:
    cluster.create(model_deployment("broken"))
    wait_for(lambda: cluster.isvcs(), what="an InferenceService")
    failure = {"reason": "ModelLoadFailed", "message": "no labels beside the model"}
    cluster.kserve_reports(
        "broken",
        conditions=[{"type": "Ready", "status": "False", "reason": "ModelLoadFailed"}],
        modelStatus={"transitionStatus": "BlockedByFailedLoad", "lastFailureInfo": failure},
    )
    md = phase(cluster, "broken", "Failed")
    ready_condition = next(c for c in md["status"]["conditions"] if c["type"] == "Ready")
    assert (ready_condition["reason"], ready_condition["message"]) == (
        "ModelLoadFailed",
        "no labels beside the model",
    )
    wait_for_event(lambda: cluster.events("broken"), ("Warning", "ModelLoadFailed"))


def test_an_invalid_spec_is_a_condition_and_an_event_not_a_retry_storm(
    operator: Operator, cluster: Cluster
) -> None:
    # The CRD schema cannot compare two fields; the operator's model can.
    cluster.create(model_deployment("bad", replicas={"min": 5, "max": 2}))
    md = phase(cluster, "bad", "Failed")
    ready_condition = next(c for c in md["status"]["conditions"] if c["type"] == "Ready")
    assert ready_condition["reason"] == "InvalidSpec" and "spec.replicas" in ready_condition["message"]
    assert wait_for(lambda: cluster.events("bad")) == [("Warning", "InvalidSpec")]
    time.sleep(3)  # a permanent error is not retried: still one Event, no InferenceService
    assert cluster.events("bad") == [("Warning", "InvalidSpec")]
    assert cluster.isvcs() == []

    cluster.patch_spec("bad", {"replicas": {"min": 1, "max": 2}})
    wait_for(lambda: cluster.isvcs(), what="an InferenceService once the spec is fixed")


def test_a_missing_storage_secret_waits_for_the_secret(operator: Operator, cluster: Cluster) -> None:
    cluster.create(
        model_deployment("private", storage={"secretName": "model-s3", "endpoint": "http://minio:9000"})
    )
    md = phase(cluster, "private", "Failed")
    assert next(c for c in md["status"]["conditions"] if c["type"] == "Ready")["reason"] == "SecretNotFound"
    wait_for_event(lambda: cluster.events("private"), ("Warning", "SecretNotFound"))
    assert cluster.isvcs() == []

    cluster.core.create_namespaced_secret(
        cluster.ns,
        {
            "metadata": {"name": "model-s3"},
            "stringData": {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"},
        },
    )
    isvc = wait_for(lambda: cluster.isvcs(), timeout=30, what="an InferenceService once the Secret exists")[0]
    account = cluster.core.read_namespaced_service_account("private-model-storage", cluster.ns)
    assert [s.name for s in account.secrets] == ["model-s3"]
    assert isvc["spec"]["predictor"]["serviceAccountName"] == "private-model-storage"
    assert cluster.events("private").count(("Warning", "SecretNotFound")) == 1, "one Event per transition"


def test_restarts_and_deletion_leave_exactly_one_or_none(
    kube_api,
    api_client: client.ApiClient,
    cluster: Cluster,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    cluster.create(model_deployment("restarted"))  # created while no operator runs
    first = start_operator(kube_api.kubeconfig, tmp_path / "first")
    try:
        wait_for(lambda: cluster.isvcs(), what="an InferenceService")
        version = cluster.isvc("restarted")["metadata"]["resourceVersion"]
    finally:
        first.process.stop()
    second = start_operator(kube_api.kubeconfig, tmp_path / "second")
    try:
        time.sleep(3)  # room for a wrong second create or a needless replace
        assert [i["metadata"]["name"] for i in cluster.isvcs()] == ["restarted"]
        assert cluster.isvc("restarted")["metadata"]["resourceVersion"] == version

        cluster.custom.delete_namespaced_custom_object(*ISVC, cluster.ns, "inferenceservices", "restarted")
        wait_for(lambda: cluster.isvcs(), what="the deleted InferenceService recreated")

        cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, cluster.ns, PLURAL, "restarted")
        wait_for(lambda: cluster.isvcs() == [], what="the InferenceService gone with its owner")
    finally:
        second.process.stop()
