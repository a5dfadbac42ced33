"""ModelDeployment: ensure its InferenceService exists as the spec says, and mirror its status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf
from pydantic import ValidationError

from kubeclassify.core.policy import model_denials
from kubeclassify.core.resources.common import parse_resource
from kubeclassify.core.resources.model_deployment import ModelDeployment, ModelDeploymentStatus
from kubeclassify.operator.builders.inference_service import (
    Rollout,
    inference_service,
    name_for,
    plan,
    stable_model,
    storage_service_account,
)
from kubeclassify.operator.builders.model_deployment_status import failed_status, serving_status
from kubeclassify.operator.config import OperatorConfig
from kubeclassify.operator.handlers.status import Problem, as_body, conditions, refuse, write_status
from kubeclassify.operator.kube import ClusterApi


def parse(body: Mapping[str, Any]) -> ModelDeployment:
    try:
        return parse_resource(ModelDeployment, dict(body))
    except ValidationError as e:
        raise Problem("InvalidSpec", explain(e), permanent=True) from e


def explain(error: ValidationError) -> str:
    """One line per problem: the field's path and what is wrong with it."""
    lines = []
    for err in error.errors():
        path = ".".join(str(p) for p in err["loc"] if p not in ("function-after",)) or "spec"
        lines.append(f"{path}: {err['msg']}")
    return "; ".join(lines)


def rollout_for(md: ModelDeployment, isvc: Mapping[str, Any] | None) -> Rollout:
    percent = md.spec.canary.traffic_percent if md.spec.canary else None
    return plan(md.spec.model, stable_model(dict(isvc) if isvc else None), percent)


def ensure(body: Mapping[str, Any], kube: ClusterApi, config: OperatorConfig) -> ModelDeploymentStatus:
    """Create or update the InferenceService (and the storage ServiceAccount) for `body`."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    md = parse(body)
    refuse(model_denials(config.policy, namespace, md.spec))
    storage = md.spec.storage
    if storage is not None and storage.secret_name and not kube.secret_exists(namespace, storage.secret_name):
        raise Problem(
            "SecretNotFound",
            f"spec.storage.secretName: Secret {storage.secret_name!r} does not exist"
            f" in namespace {namespace}",
        )
    current = kube.get_inference_service(namespace, name_for(name))
    rollout = rollout_for(md, current)
    account = storage_service_account(md)
    if account is not None:
        kopf.adopt(account, owner=as_body(body))
        kube.apply(namespace, account)
    desired = inference_service(md, config, rollout)
    kopf.adopt(desired, owner=as_body(body))
    applied = kube.apply_inference_service(namespace, desired)
    return serving_status(
        conditions(body.get("status")), body["metadata"].get("generation"), applied, rollout
    )


def mirror(body: Mapping[str, Any], isvc: Mapping[str, Any]) -> ModelDeploymentStatus | None:
    """The status `body` gets from its InferenceService as it is now (None for an invalid spec:
    its status already says why)."""
    try:
        md = parse(body)
    except Problem:
        return None
    return serving_status(
        conditions(body.get("status")), body["metadata"].get("generation"), dict(isvc), rollout_for(md, isvc)
    )


def failed(body: Mapping[str, Any], problem: Problem) -> ModelDeploymentStatus:
    return failed_status(
        conditions(body.get("status")), body["metadata"].get("generation"), problem.reason, problem.message
    )


def write(kube: ClusterApi, body: Mapping[str, Any], status: ModelDeploymentStatus) -> None:
    """Patch the status when it changed, and post an Event for each transition."""
    write_status(kube.patch_model_deployment_status, body, status)
