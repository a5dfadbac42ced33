"""The platform's policy, tried as a custom-resource author would attack it: each resource below
names storage, a Secret or a ServiceAccount its namespace may not use, or a gateway user's data. The
real operator (started with a policy for this namespace) answers each with Ready False, reason
PolicyDenied (naming the field and the rule) and an Event, and creates no Job or InferenceService;
a resource within the policy gets its Job, so the refusals are the policy's and nothing else's."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from e2e.conftest import start_operator
from harness.wait import wait_for
from kubernetes import client

from kubeclassify.core import constants as c

GROUP, VERSION = c.GROUP, c.VERSION
CB, MD = c.PLURALS[c.CLASSIFICATION_BATCH], c.PLURALS[c.MODEL_DEPLOYMENT]
ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")


class Namespace:
    def __init__(self, api_client: client.ApiClient, name: str) -> None:
        self.custom, self.core = client.CustomObjectsApi(api_client), client.CoreV1Api(api_client)
        self.batch, self.api, self.ns = client.BatchV1Api(api_client), api_client, name

    def create(self, plural: str, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, plural, body)

    def get(self, plural: str, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, plural, name)

    def jobs(self) -> list[str]:
        return [j.metadata.name for j in self.batch.list_namespaced_job(self.ns).items]

    def isvcs(self) -> list[str]:
        items = self.custom.list_namespaced_custom_object(*ISVC[:2], self.ns, ISVC[2])["items"]
        return [i["metadata"]["name"] for i in items]

    def events(self, name: str) -> list[tuple[str, str, str]]:
        return [
            (e.type, e.reason, e.message)
            for e in self.core.list_namespaced_event(self.ns).items
            if e.involved_object.name == name
        ]

    def denied(self, plural: str, name: str) -> str:
        """The PolicyDenied message of a resource, once the operator has set it."""

        def condition() -> str | None:
            status = self.get(plural, name).get("status") or {}
            for cond in status.get("conditions") or []:
                if cond["type"] == "Ready" and cond["reason"] == "PolicyDenied":
                    return str(cond["message"])
            return None

        message: str = wait_for(condition, timeout=30, what=f"{name} to be denied")
        assert any(r == "PolicyDenied" for _, r, _ in wait_for(lambda: self.events(name), what="its Event"))
        return message


@pytest.fixture(scope="module")
def ns(
    kube_api, api_client: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Namespace]:  # type: ignore[no-untyped-def]
    name = f"team-{secrets.token_hex(4)}"
    policy = {
        "namespaces": {
            name: {
                "read": ["s3://team/data/", "s3://team/models/"],
                "write": ["s3://team/results/"],
                "secrets": ["team-s3"],
                "serviceAccounts": ["team-reader"],
            }
        },
        "reserved": ["s3://kc-gw/images/", "s3://kc-gw/batches/"],
    }
    running = start_operator(
        kube_api.kubeconfig,
        tmp_path_factory.mktemp("policy-operator"),
        namespaces=json.dumps([name]),
        policy=json.dumps(policy),
    )
    space = Namespace(api_client, name)
    space.create(MD, model("digits"))
    yield space
    running.process.stop()


def model(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": "s3://team/models/digits/"},
            "input": {"height": 8, "width": 8, "channels": 1, "colorMode": "grayscale"},
            **spec,
        },
    }


def batch(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ClassificationBatch",
        "metadata": {"name": name, **({"labels": labels} if labels else {})},
        "spec": {
            "modelRef": {"name": "digits"},
            "input": {"manifest": {"uri": "s3://team/data/manifest.csv", "root": "s3://team/data/"}},
            "date": "2026-11-20",
            "output": {"uri": "s3://team/results/{date}/predictions.csv"},
        },
    }
    for key, value in spec.items():
        body["spec"][key] = value
    return body


def test_a_batch_within_the_policy_gets_its_job(ns: Namespace) -> None:
    ns.create(CB, batch("allowed"))
    assert wait_for(lambda: [j for j in ns.jobs() if j.startswith("allowed-")], what="its Job")


@pytest.mark.parametrize(
    ("name", "spec", "field"),
    [
        ("list-another-team", {"input": {"prefix": {"uri": "s3://other-team/"}}}, "spec.input.prefix.uri"),
        (
            "copy-out",
            {"output": {"uri": "s3://team/results/x.csv", "copyImages": {"uri": "s3://mine/loot/"}}},
            "spec.output.copyImages.uri",
        ),
        ("overwrite", {"output": {"uri": "s3://team/data/{date}.csv"}}, "spec.output.uri"),
        ("local-file", {"input": {"urls": {"uri": "file:///etc/passwd"}}}, "spec.input.urls.uri"),
        (
            "climb",
            {"input": {"prefix": {"uri": "s3://team/data/../../other/"}}},
            "spec.input.prefix.uri",
        ),
        (
            "gateway-results",
            {"output": {"uri": "s3://kc-gw/batches/alice/alice-1/results.csv"}},
            "spec.output.uri",
        ),
    ],
)
def test_a_batch_naming_what_its_namespace_may_not_is_denied(
    ns: Namespace, name: str, spec: dict[str, Any], field: str
) -> None:
    ns.create(CB, batch(name, **spec))
    message = ns.denied(CB, name)
    assert field in message, message
    time.sleep(1)
    assert not [j for j in ns.jobs() if j.startswith(name)]


def test_a_resource_labelled_as_one_gateway_user_cannot_name_anothers_data(ns: Namespace) -> None:
    spec = {"input": {"urls": {"uri": "s3://kc-gw/batches/alice/alice-1/input.csv", "column": "path"}}}
    ns.create(CB, batch("mallory", labels={c.LABEL_OWNER: "mallory"}, **spec))
    message = ns.denied(CB, "mallory")
    assert "spec.input.urls.uri" in message and "not mallory's part" in message, message
    assert not [j for j in ns.jobs() if j.startswith("mallory")]


@pytest.mark.parametrize(
    ("name", "spec", "field"),
    [
        ("foreign-secret", {"storage": {"secretName": "gateway-token"}}, "spec.storage.secretName"),
        ("foreign-sa", {"storage": {"serviceAccountName": "operator"}}, "spec.storage.serviceAccountName"),
        ("foreign-model", {"model": {"uri": "s3://other-team/models/x/"}}, "spec.model.uri"),
        ("file-model", {"model": {"uri": "file:///var/run/secrets/"}}, "spec.model.uri"),
    ],
)
def test_a_model_deployment_naming_what_its_namespace_may_not_is_denied(
    ns: Namespace, name: str, spec: dict[str, Any], field: str
) -> None:
    ns.create(MD, model(name, **spec))
    message = ns.denied(MD, name)
    assert field in message, message
    time.sleep(1)
    assert name not in ns.isvcs()


def test_a_batch_cannot_borrow_a_model_deployments_secret_the_policy_forbids(ns: Namespace) -> None:
    """The Jobs run with the ModelDeployment's storage: the two are checked together."""
    ns.create(MD, model("borrowed", storage={"secretName": "gateway-token"}))
    ns.create(CB, batch("borrower", modelRef={"name": "borrowed"}))
    message = ns.denied(CB, "borrower")
    assert "spec.modelRef 'borrowed': spec.storage.secretName" in message, message
    assert not [j for j in ns.jobs() if j.startswith("borrower")]


def test_a_webhook_cannot_sign_with_a_secret_not_made_for_it(ns: Namespace) -> None:
    """Naming the storage Secret as the webhook's key would make the operator an HMAC oracle for it."""
    data = {"secret": base64.b64encode(b"storage key").decode()}
    ns.core.create_namespaced_secret(ns.ns, {"metadata": {"name": "team-s3"}, "data": data})
    labels = {c.LABEL_WEBHOOK_SECRET: "true"}
    ns.core.create_namespaced_secret(
        ns.ns, {"metadata": {"name": "team-hook", "labels": labels}, "data": data}
    )
    hook = {"url": "https://hooks.example.com/done"}
    ns.create(CB, batch("oracle", webhook={**hook, "secretName": "team-s3"}))
    message = ns.denied(CB, "oracle")
    assert "spec.webhook.secretName: 'team-s3' is not labelled kubeclassify.io/webhook-secret=true" in message
    assert not [j for j in ns.jobs() if j.startswith("oracle")]
    ns.create(CB, batch("signed", webhook={**hook, "secretName": "team-hook"}))
    assert wait_for(lambda: [j for j in ns.jobs() if j.startswith("signed-")], what="its Job")


def test_the_denial_names_the_rule(ns: Namespace) -> None:
    ns.create(CB, batch("explained", input={"prefix": {"uri": "s3://elsewhere/"}}))
    message = ns.denied(CB, "explained")
    assert "'s3://elsewhere/' is outside what this namespace may use" in message
    assert "s3://team/data/" in message, "the message shows what is allowed"
