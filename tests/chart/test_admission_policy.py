"""The tenant policy as the chart's ValidatingAdmissionPolicies (CEL, evaluated with cel-python: the
API emulator has no admission step) and as the operator checks it (`kubeclassify.core.policy`, with
the policy the chart renders into the operator's settings): the same verdict on every case, and the
one rule only admission can check, who may set a gateway owner label, tried as an attack."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart.test_platform_chart import MODERN
from harness.admission import refusals

from kubeclassify.core import constants as c
from kubeclassify.core.policy import DOT_SEGMENT, ENCODED_DOT, Policy, batch_denials, model_denials
from kubeclassify.core.resources.classification_batch import ClassificationBatchSpec
from kubeclassify.core.resources.model_deployment import ModelDeploymentSpec

RELEASE_NS = "kubeclassify"
GATEWAY = f"system:serviceaccount:{RELEASE_NS}:kc-kubeclassify-gateway"
VALUES = {
    "s3": {"existingSecret": "platform-s3"},
    "gateway": {
        "settings": {
            "imagesUri": "s3://kc-data/images",
            "batchesUri": "s3://kc-data/batches",
            "manifest": {"uri": "s3://incoming/metadata.csv", "root": "s3://incoming/"},
        }
    },
    "operator": {"watch": {"namespaces": [RELEASE_NS, "team-a"]}},
    "policy": {
        "namespaces": {
            "team-a": {
                "read": ["s3://team-a/data/", "s3://models/"],
                "write": ["s3://team-a/results/"],
                "secrets": ["team-a-s3"],
                "serviceAccounts": ["team-a-reader"],
            },
            RELEASE_NS: {"read": ["s3://models/"], "write": ["s3://results/"]},
        },
        "default": {"read": [], "write": [], "secrets": [], "serviceAccounts": []},
    },
}


@pytest.fixture(scope="module")
def rendered(helm: str, chart: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    values = tmp_path_factory.mktemp("admission") / "values.yaml"
    values.write_text(yaml.safe_dump(VALUES))
    done = subprocess.run(
        [helm, "template", "kc", str(chart), "-n", RELEASE_NS, "-f", str(values), *MODERN],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    vaps = {
        d["spec"]["matchConstraints"]["resourceRules"][0]["resources"][0]: d
        for d in docs
        if d["kind"] == "ValidatingAdmissionPolicy"
    }
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-operator"))
    bindings = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding"]
    return {
        "vaps": vaps,
        "bindings": bindings,
        "policy": Policy.model_validate_json(config["data"]["KUBECLASSIFY_OPERATOR__POLICY"]),
    }


def batch(owner: str | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "modelRef": {"name": "digits"},
        "input": {"manifest": {"uri": "s3://team-a/data/manifest.csv", "root": "s3://team-a/data/"}},
        "date": "2026-11-20",
        "output": {"uri": "s3://team-a/results/{date}/predictions.csv"},
    }
    body.update(spec)
    labels = {c.LABEL_OWNER: owner} if owner else {}
    return {"kind": "ClassificationBatch", "metadata": {"name": "b", "labels": labels}, "spec": body}


def model(**spec: Any) -> dict[str, Any]:
    body = {"model": {"uri": "s3://models/digits/"}, **spec}
    return {"kind": "ModelDeployment", "metadata": {"name": "digits"}, "spec": body}


CASES = [
    ("team-a", batch(), True),
    ("team-a", batch(input={"prefix": {"uri": "s3://team-a/data"}}), True),
    ("team-a", batch(input={"prefix": {"uri": "s3://other/"}}), False),
    ("team-a", batch(input={"prefix": {"uri": "s3://team-a/database/"}}), False),
    ("team-a", batch(input={"prefix": {"uri": "s3://team-a/data/../../other/"}}), False),
    ("team-a", batch(input={"prefix": {"uri": "s3://team-a/data/%2E%2e/other/"}}), False),
    ("team-a", batch(input={"urls": {"uri": "file:///etc/passwd"}}), False),
    ("team-a", batch(output={"uri": "s3://team-a/data/{date}.csv"}), False),
    (
        "team-a",
        batch(output={"uri": "s3://team-a/results/x.csv", "copyImages": {"uri": "s3://elsewhere/"}}),
        False,
    ),
    ("team-z", batch(), False),
    (
        RELEASE_NS,
        batch(
            "alice",
            input={"urls": {"uri": "s3://kc-data/batches/alice/alice-1/input.csv", "column": "path"}},
            output={"uri": "s3://kc-data/batches/alice/alice-1/results.csv"},
        ),
        True,
    ),
    (
        RELEASE_NS,
        batch(
            "alice",
            input={"manifest": {"uri": "s3://incoming/metadata.csv", "root": "s3://incoming/"}},
            output={"uri": "s3://kc-data/batches/alice/daily/{date}/results.csv"},
        ),
        True,
    ),
    (
        RELEASE_NS,
        batch(
            "mallory",
            input={"urls": {"uri": "s3://kc-data/batches/alice/alice-1/input.csv", "column": "path"}},
            output={"uri": "s3://kc-data/batches/mallory/m-1/results.csv"},
        ),
        False,
    ),
    (
        RELEASE_NS,
        batch(
            input={"manifest": {"uri": "s3://incoming/metadata.csv"}},
            output={"uri": "s3://kc-data/batches/alice/alice-1/results.csv"},
        ),
        False,
    ),
    (
        RELEASE_NS,
        batch(input={"prefix": {"uri": "s3://kc-data/images/"}}, output={"uri": "s3://results/x.csv"}),
        False,
    ),
    ("team-a", model(storage={"secretName": "team-a-s3"}), True),
    ("team-a", model(storage={"secretName": "platform-s3"}), False),
    (RELEASE_NS, model(storage={"secretName": "platform-s3"}), True),
    ("team-a", model(storage={"serviceAccountName": "team-a-reader"}), True),
    ("team-a", model(storage={"serviceAccountName": "kc-kubeclassify-operator"}), False),
    ("team-a", model(model={"uri": "s3://other/models/"}), False),
    ("team-a", model(model={"uri": "s3://models/x/", "labelsUri": "s3://secrets/labels.json"}), False),
    ("team-a", model(model={"uri": "file:///models/digits/"}), False),
    (RELEASE_NS, model(model={"uri": "s3://kc-data/images/alice/"}), False),
]


@pytest.mark.parametrize(("namespace", "obj", "allowed"), CASES)
def test_admission_and_the_operator_give_the_same_verdict(
    rendered: dict[str, Any], namespace: str, obj: dict[str, Any], allowed: bool
) -> None:
    policy: Policy = rendered["policy"]
    if obj["kind"] == "ClassificationBatch":
        spec = ClassificationBatchSpec.model_validate(obj["spec"])
        operator = batch_denials(policy, namespace, spec, obj["metadata"]["labels"])
        vap = rendered["vaps"]["classificationbatches"]
    else:
        operator = model_denials(policy, namespace, ModelDeploymentSpec.model_validate(obj["spec"]))
        vap = rendered["vaps"]["modeldeployments"]
    admission = refusals(vap, obj, namespace, GATEWAY)
    assert (operator == []) == allowed, operator
    assert (admission == []) == allowed, admission


def test_only_the_gateway_may_label_a_resource_with_a_gateway_owner(rendered: dict[str, Any]) -> None:
    """Labels can be copied: a user with create rights on ClassificationBatches who labels one as
    alice's, to reach her data, is refused at admission (the operator cannot tell who created it)."""
    vap = rendered["vaps"]["classificationbatches"]
    theft = batch(
        "alice",
        input={"urls": {"uri": "s3://kc-data/batches/alice/alice-1/input.csv", "column": "path"}},
        output={"uri": "s3://kc-data/batches/alice/alice-1/results.csv"},
    )
    refused = refusals(vap, theft, RELEASE_NS, "kubernetes-admin")
    assert refused == [
        "PolicyDenied: only the gateway labels a resource with kubeclassify.io/owner;"
        " kubernetes-admin may not"
    ]
    assert refusals(vap, theft, RELEASE_NS, GATEWAY) == []


OPERATOR = f"system:serviceaccount:{RELEASE_NS}:kc-kubeclassify-operator"


def test_others_may_update_a_gateway_batch_but_not_move_its_owner_or_admit_its_runs(
    rendered: dict[str, Any],
) -> None:
    """The operator (its finalizer, Kopf's annotations, taking a rerun annotation) and a schedule's
    tick pod update gateway batches: that is admitted while the owner label stays as it was (every
    update of a gateway batch by anyone but the gateway was refused). Moving the owner label, or
    admitting a run (the admission annotation says its credits were reserved), is the gateway's."""
    vap = rendered["vaps"]["classificationbatches"]
    old = batch(
        "alice",
        input={"urls": {"uri": "s3://kc-data/batches/alice/alice-1/input.csv", "column": "path"}},
        output={"uri": "s3://kc-data/batches/alice/alice-1/results.csv"},
    )
    tick = copy.deepcopy(old)
    tick["metadata"]["annotations"] = {"kubeclassify.io/tick": "1", "kopf.kubeclassify.io/x": "{}"}
    tick["metadata"]["finalizers"] = ["kubeclassify.io/finalizer"]
    assert refusals(vap, tick, RELEASE_NS, OPERATOR, old=old) == []
    assert refusals(vap, tick, RELEASE_NS, "system:serviceaccount:kc:tick", old=old) == []

    moved = copy.deepcopy(old)
    moved["metadata"]["labels"]["kubeclassify.io/owner"] = "bob"
    assert (
        f"PolicyDenied: only the gateway labels a resource with kubeclassify.io/owner; {OPERATOR} may not"
        in refusals(vap, moved, RELEASE_NS, OPERATOR, old=old)
    )
    admitted = copy.deepcopy(old)
    admitted["metadata"]["annotations"] = {c.ANNOTATION_ADMISSION: '{"run":"alice-1","images":1000000}'}
    assert refusals(vap, admitted, RELEASE_NS, OPERATOR, old=old) == [
        f"PolicyDenied: only the gateway admits a run (kubeclassify.io/admission); {OPERATOR} may not"
    ]
    assert refusals(vap, admitted, RELEASE_NS, GATEWAY, old=old) == []


def test_a_refusal_names_the_field(rendered: dict[str, Any]) -> None:
    vap = rendered["vaps"]["classificationbatches"]
    refused = refusals(vap, batch(input={"prefix": {"uri": "s3://other/"}}), "team-a", "someone")
    assert refused == [
        "PolicyDenied: spec.input.prefix.uri: s3://other/ is not in what namespace team-a may read,"
        " or is a gateway user's that this resource may not name"
    ]


def test_the_policies_bind_in_the_watched_namespaces_and_share_the_operators_patterns(
    rendered: dict[str, Any],
) -> None:
    for binding in rendered["bindings"]:
        selector = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0]
        assert selector["values"] == [RELEASE_NS, "team-a"] and binding["spec"]["validationActions"] == [
            "Deny"
        ]
    text = json.dumps(rendered["vaps"])
    assert json.dumps(DOT_SEGMENT)[1:-1] in text and json.dumps(ENCODED_DOT)[1:-1] in text
