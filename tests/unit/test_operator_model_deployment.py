"""ModelDeployment → InferenceService: the builder for every variant (validated against KServe's
own CRD schema), the canary plan, the status read back from KServe, and the declared RBAC."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from harness.kubeapi_launch import KSERVE_CRD
from harness.schemas import load_crds, schema_errors

from kubeclassify.core import constants as c
from kubeclassify.core.resources.model_deployment import ModelDeployment, ModelSpec
from kubeclassify.operator.builders.inference_service import (
    Rollout,
    inference_service,
    plan,
    stable_model,
    storage_service_account,
)
from kubeclassify.operator.builders.model_deployment_status import serving_status
from kubeclassify.operator.config import OperatorConfig
from kubeclassify.operator.handlers.model_deployment import Problem, parse
from kubeclassify.operator.handlers.status import status_patch

KSERVE = load_crds(KSERVE_CRD)
CONFIG = OperatorConfig(inference_image="registry.example/kubeclassify/inference:1.2.3")
OLD = ModelSpec(uri="s3://models/digits/v1/")
NEW = ModelSpec(uri="s3://models/digits/v2/", version="v2")
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


def deployment(**spec: Any) -> ModelDeployment:
    body = {
        "metadata": {"name": "digits", "namespace": "ml", "generation": 3},
        "spec": {"model": {"uri": NEW.uri, "version": "v2"}, **spec},
    }
    return ModelDeployment.model_validate(body)


def predictor_env(predictor: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in predictor["containers"][0]["env"]}


def served_model(predictor: dict[str, Any]) -> str:
    return json.loads(predictor_env(predictor)["KUBECLASSIFY_MODEL_DEPLOYMENT"])["spec"]["model"]["uri"]


VARIANTS = {
    "cpu": ({}, Rollout(stable=NEW)),
    "gpu": ({"resources": {"gpu": 2, "memory": "8Gi", "cpu": "4"}}, Rollout(stable=NEW)),
    "knative-canary": (
        {"deploymentMode": "Knative", "canary": {"trafficPercent": 20}},
        Rollout(OLD, NEW, 20),
    ),
    "standard-canary": (
        {"deploymentMode": "Standard", "canary": {"trafficPercent": 20}},
        Rollout(OLD, NEW, 20),
    ),
    "rolled-back": ({"canary": {"trafficPercent": 0}}, Rollout(stable=OLD, rolled_back=True)),
    "storage-secret": ({"storage": {"secretName": "s3", "endpoint": "http://minio.data:9000"}}, Rollout(NEW)),
    "storage-account": ({"storage": {"serviceAccountName": "irsa-models"}}, Rollout(NEW)),
    "autoscaling": (
        {"replicas": {"min": 0, "max": 8, "scaleTarget": 4, "scaleMetric": "concurrency"}},
        Rollout(NEW),
    ),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_validates_against_kserves_schema(variant: str) -> None:
    spec, rollout = VARIANTS[variant]
    isvc = inference_service(deployment(**spec), CONFIG, rollout)
    assert schema_errors(isvc, KSERVE) == []
    predictor = isvc["spec"]["predictor"]
    container = predictor["containers"][0]
    assert container["image"] == CONFIG.inference_image
    assert container["args"][:3] == ["serve", "--model_name", "digits"]
    assert "batcher" not in predictor, "batching happens once, in the predictor"
    assert predictor["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert isvc["metadata"]["labels"][c.LABEL_MODEL_DEPLOYMENT] == "digits"


def test_cpu_predictor_runs_the_model_from_storage_with_the_spec() -> None:
    isvc = inference_service(deployment(batching={"maxBatchSize": 16}), CONFIG, Rollout(stable=NEW))
    predictor = isvc["spec"]["predictor"]
    env = predictor_env(predictor)
    assert env["STORAGE_URI"] == NEW.uri  # KServe's storage initializer fills /mnt/models
    served = json.loads(env["KUBECLASSIFY_MODEL_DEPLOYMENT"])
    assert served["metadata"]["name"] == "digits"
    assert served["spec"]["batching"]["maxBatchSize"] == 16
    assert "nvidia.com/gpu" not in json.dumps(predictor)
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert stable_model(isvc) == NEW


def test_gpu_predictor_asks_for_gpus_and_lands_on_gpu_nodes() -> None:
    md = deployment(resources={"gpu": 2, "memory": "8Gi", "nodeSelector": {"pool": "a100"}})
    predictor = inference_service(md, CONFIG, Rollout(stable=NEW))["spec"]["predictor"]
    resources = predictor["containers"][0]["resources"]
    assert resources["limits"] == {"nvidia.com/gpu": "2", "memory": "8Gi"}
    assert predictor["nodeSelector"] == {"nvidia.com/gpu.present": "true", "pool": "a100"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in predictor["tolerations"]


def test_canary_takes_the_form_of_each_mode() -> None:
    rollout = Rollout(stable=OLD, canary=NEW, canary_percent=20)
    knative = inference_service(deployment(deploymentMode="Knative"), CONFIG, rollout)["spec"]
    assert knative["predictor"]["canaryTrafficPercent"] == 20
    assert served_model(knative["predictor"]) == NEW.uri  # KServe keeps the last rolled-out revision
    assert "canary" not in knative
    standard = inference_service(deployment(deploymentMode="Standard"), CONFIG, rollout)["spec"]
    assert served_model(standard["predictor"]) == OLD.uri
    assert [c["trafficPercent"] for c in standard["canary"]] == [20]
    assert served_model(standard["canary"][0]["predictor"]) == NEW.uri
    assert "canaryTrafficPercent" not in standard["predictor"]


def pod_template(predictor: dict[str, Any]) -> dict[str, Any]:
    """What of a predictor becomes its pods' template (KServe's replica bounds and scaling do not)."""
    scaling = ("minReplicas", "maxReplicas", "scaleTarget", "scaleMetric", "canaryTrafficPercent")
    return {k: v for k, v in predictor.items() if k not in scaling}


def test_scaling_and_traffic_edits_change_no_pod_template() -> None:
    """Editing replicas or the canary's traffic must not roll any predictor's pods: the predictor is
    handed only what it serves (model, input, batching), in each mode."""
    for mode in ("Standard", "Knative"):
        rollout = Rollout(stable=OLD, canary=NEW, canary_percent=20)
        before = inference_service(
            deployment(deploymentMode=mode, canary={"trafficPercent": 20}), CONFIG, rollout
        )
        after = inference_service(
            deployment(deploymentMode=mode, canary={"trafficPercent": 50}, replicas={"min": 2, "max": 9}),
            CONFIG,
            Rollout(stable=OLD, canary=NEW, canary_percent=50),
        )
        assert pod_template(after["spec"]["predictor"]) == pod_template(before["spec"]["predictor"]), mode
        for a, b in zip(after["spec"].get("canary", []), before["spec"].get("canary", []), strict=True):
            assert pod_template(a["predictor"]) == pod_template(b["predictor"]), mode
    served = json.loads(predictor_env(before["spec"]["predictor"])["KUBECLASSIFY_MODEL_DEPLOYMENT"])
    assert sorted(served["spec"]) == ["batching", "input", "model"]


def test_the_plan_promotes_rolls_back_or_splits() -> None:
    assert plan(NEW, None, 20) == Rollout(stable=NEW)  # the first model has nothing to share with
    assert plan(NEW, NEW, 20) == Rollout(stable=NEW)  # an unchanged model is no canary
    assert plan(NEW, OLD, None) == Rollout(stable=NEW)  # no canary asked: straight out
    assert plan(NEW, OLD, 20) == Rollout(stable=OLD, canary=NEW, canary_percent=20)
    assert plan(NEW, OLD, 100) == Rollout(stable=NEW)  # promote
    assert plan(NEW, OLD, 0) == Rollout(stable=OLD, rolled_back=True)  # roll back


def test_a_storage_secret_reaches_kserve_through_a_service_account() -> None:
    md = deployment(storage={"secretName": "s3", "endpoint": "https://minio.data:9000", "region": "eu-1"})
    account = storage_service_account(md)
    assert account is not None
    assert account["secrets"] == [{"name": "s3"}]
    assert account["metadata"]["annotations"] == {
        "serving.kserve.io/s3-endpoint": "minio.data:9000",
        "serving.kserve.io/s3-usehttps": "1",
        "serving.kserve.io/s3-region": "eu-1",
    }
    predictor = inference_service(md, CONFIG, Rollout(stable=NEW))["spec"]["predictor"]
    assert predictor["serviceAccountName"] == account["metadata"]["name"]
    assert predictor["containers"][0]["envFrom"] == [{"secretRef": {"name": "s3"}}]
    assert storage_service_account(deployment()) is None


def test_a_file_model_is_read_by_the_predictor_itself() -> None:
    md = ModelDeployment.model_validate(
        {"metadata": {"name": "m"}, "spec": {"model": {"uri": "file:///models/m"}}}
    )
    predictor = inference_service(md, CONFIG, Rollout(stable=md.spec.model))["spec"]["predictor"]
    assert "STORAGE_URI" not in predictor_env(predictor)


# --- status from KServe's ----------------------------------------------------------------------


def isvc(status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": "digits", "generation": generation},
        **({"status": status} if status else {}),
    }


def ready(url: str = "http://digits.ml.example.com", **extra: Any) -> dict[str, Any]:
    return {
        "url": url,
        "address": {"url": "http://digits.ml.svc.cluster.local"},
        "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "True"}],
        **extra,
    }


def test_status_follows_the_inference_service() -> None:
    pending = serving_status([], 3, isvc(None), Rollout(NEW), NOW)
    assert (pending.phase, pending.conditions[0].status) == ("Pending", "Unknown")
    progressing = serving_status(
        [],
        3,
        isvc(
            {
                "conditions": [
                    {"type": "Ready", "status": "False", "reason": "RevisionMissing", "message": "m"}
                ]
            }
        ),
        Rollout(NEW),
        NOW,
    )
    assert (progressing.phase, progressing.conditions[0].reason) == ("Progressing", "RevisionMissing")
    up = serving_status(progressing.conditions, 3, isvc(ready()), Rollout(NEW), NOW)
    # the gateway and batches call the cluster-local address, never KServe's external URL
    assert (up.phase, up.url, up.external_url, up.observed_generation, up.stable_version) == (
        "Ready",
        "http://digits.ml.svc.cluster.local",
        "http://digits.ml.example.com",
        3,
        "v2",
    )
    assert up.conditions[0].status == "True" and up.conditions[0].observed_generation == 3


def test_a_ready_from_before_the_last_change_does_not_count() -> None:
    stale = serving_status([], 3, isvc(ready(), generation=2), Rollout(NEW), NOW)
    assert stale.phase == "Progressing"


def test_a_model_that_fails_to_load_fails_the_deployment() -> None:
    failing = {
        "conditions": [{"type": "Ready", "status": "False"}],
        "modelStatus": {
            "transitionStatus": "BlockedByFailedLoad",
            "states": {"activeModelState": "FailedToLoad"},
            "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "no labels"},
        },
    }
    status = serving_status([], 3, isvc(failing), Rollout(NEW), NOW)
    assert (status.phase, status.conditions[0].reason, status.conditions[0].message) == (
        "Failed",
        "ModelLoadFailed",
        "no labels",
    )


def test_traffic_split_is_read_in_each_mode() -> None:
    canary = Rollout(stable=OLD, canary=NEW, canary_percent=20)
    knative = ready(
        components={
            "predictor": {
                "traffic": [
                    {"revisionName": "a", "percent": 75},
                    {"revisionName": "b", "percent": 25, "latestRevision": True},
                ]
            }
        }
    )
    status = serving_status([], 3, isvc(knative), canary, NOW)
    assert (status.phase, status.canary_traffic_percent, status.stable_version, status.canary_version) == (
        "Canary",
        25,
        OLD.uri,
        "v2",
    )
    standard = ready(canaryStatuses=[{"name": "canary", "ready": True, "trafficPercent": 20}])
    assert serving_status([], 3, isvc(standard), canary, NOW).canary_traffic_percent == 20
    back = serving_status(status.conditions, 3, isvc(ready()), Rollout(stable=OLD, rolled_back=True), NOW)
    canary_condition = next(c for c in back.conditions if c.type == "Canary")
    assert (back.phase, canary_condition.status, canary_condition.reason) == ("Ready", "False", "RolledBack")
    assert back.canary_version is None


def test_status_patches_remove_what_is_gone_and_skip_what_is_unchanged() -> None:
    canary = serving_status([], 3, isvc(ready()), Rollout(OLD, NEW, 20), NOW)
    promoted = serving_status(canary.conditions, 3, isvc(ready()), Rollout(NEW), NOW)
    before = canary.model_dump(mode="json", by_alias=True, exclude_none=True)
    patch = status_patch(promoted, before)
    assert patch is not None and patch["canaryVersion"] is None and patch["stableVersion"] == "v2"
    later = serving_status(
        canary.conditions, 3, isvc(ready()), Rollout(OLD, NEW, 20), NOW + dt.timedelta(hours=1)
    )
    assert status_patch(later, before) is None


def test_a_bad_spec_is_a_problem_with_the_field_named() -> None:
    body = {
        "metadata": {"name": "x", "namespace": "ml"},
        "spec": {"model": {"uri": "s3://m/x"}, "replicas": {"min": 5, "max": 2}},
    }
    with pytest.raises(Problem) as caught:
        parse(body)
    assert caught.value.reason == "InvalidSpec" and caught.value.permanent
    assert "spec.replicas" in caught.value.message and "must not exceed" in caught.value.message


# --- RBAC ----------------------------------------------------------------------------------------


def test_declared_rbac_is_exactly_what_the_code_uses() -> None:
    import kopf

    import kubeclassify.operator.main  # noqa: F401  (registers the handlers)
    from kubeclassify.operator import rbac

    needed = set(rbac.USED) | rbac.FRAMEWORK
    registry = kopf.get_default_registry()
    for handlers, verbs in (
        (registry._changing, ("list", "watch", "patch")),
        (registry._watching, ("list", "watch")),
    ):
        for handler in handlers.get_all_handlers():
            selector = handler.selector
            assert selector is not None
            resource = selector.plural or selector.any_name
            group = selector.group or ""
            needed |= {rbac.Permission(group, resource, v) for v in verbs}
    assert needed == rbac.DECLARED


def test_a_namespaced_operator_needs_no_cluster_permissions() -> None:
    from kubeclassify.operator.rbac import rules

    namespaced = {r for rule in rules(cluster_wide=False) for r in rule["resources"]}
    everywhere = {r for rule in rules(cluster_wide=True) for r in rule["resources"]}
    assert {"namespaces", "customresourcedefinitions"} & namespaced == set()
    assert everywhere == namespaced | {"namespaces", "customresourcedefinitions"}
    secrets = next(rule for rule in rules(cluster_wide=False) if "secrets" in rule["resources"])
    assert secrets["verbs"] == ["get"], "the operator checks a Secret exists; it never lists them"
    assert secrets["resources"] == ["pods/log", "secrets"], "and reads running batch pods' logs"
