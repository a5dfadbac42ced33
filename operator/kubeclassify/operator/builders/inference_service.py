"""ModelDeployment → KServe InferenceService (serving.kserve.io/v1beta1), and the canary plan.

The predictor is our inference image running `kubeclassify serve`; KServe's storage initializer puts
the model (`STORAGE_URI`, for s3:// and pvc:// URIs) under /mnt/models, where the predictor looks
first. The whole ModelDeployment reaches the predictor as JSON (its input spec, labels, batching):
batching happens once, in the predictor, so KServe's batcher sidecar is never set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kubeclassify.core import constants as c
from kubeclassify.core.resources.model_deployment import DeploymentMode, ModelDeployment, ModelSpec
from kubeclassify.operator.builders.common import (
    CONTAINER_SECURITY_CONTEXT,
    POD_SECURITY_CONTEXT,
    container_resources,
    labels,
    placement,
    storage_env,
)
from kubeclassify.operator.config import OperatorConfig

ISVC_GROUP, ISVC_VERSION, ISVC_PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
ANNOTATION_STABLE_MODEL = f"{c.GROUP}/stable-model"
ANNOTATION_DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
SERVED = {"model", "input", "batching"}  # the parts of a ModelDeployment's spec a predictor reads
PORT = 8080


@dataclass(frozen=True)
class Rollout:
    """Which model serves: the stable one, and a canary with its share of traffic (or none)."""

    stable: ModelSpec
    canary: ModelSpec | None = None
    canary_percent: int = 0
    rolled_back: bool = False


def plan(desired: ModelSpec, stable: ModelSpec | None, canary_percent: int | None) -> Rollout:
    """The roll-out for `desired`, given the model now stable and the spec's canary percent.

    A changed model goes out as a canary when a percent between 1 and 99 is set; 100 (or no canary
    at all) promotes it, 0 rolls it back and keeps the stable model serving everything."""
    if stable is None or desired == stable or canary_percent is None or canary_percent == 100:
        return Rollout(stable=desired)
    if canary_percent == 0:
        return Rollout(stable=stable, rolled_back=True)
    return Rollout(stable=stable, canary=desired, canary_percent=canary_percent)


def name_for(model_deployment: str) -> str:
    """The InferenceService's name: the ModelDeployment's (its V2 model name too)."""
    return model_deployment


def storage_service_account_name(model_deployment: str) -> str:
    return f"{model_deployment}-model-storage"


def deployment_mode(md: ModelDeployment, config: OperatorConfig) -> DeploymentMode:
    return md.spec.deployment_mode or config.default_deployment_mode


def inference_service(md: ModelDeployment, config: OperatorConfig, rollout: Rollout) -> dict[str, Any]:
    """The InferenceService that serves `md` as `rollout` says, in the form its deployment mode uses."""
    name = md.metadata["name"]
    mode = deployment_mode(md, config)
    spec: dict[str, Any]
    if rollout.canary is None:
        spec = {"predictor": _predictor(md, rollout.stable, config)}
    elif mode == "Knative":
        # KServe keeps the last rolled-out revision (the stable model) for the rest of the traffic.
        spec = {
            "predictor": {
                **_predictor(md, rollout.canary, config),
                "canaryTrafficPercent": rollout.canary_percent,
            }
        }
    else:
        spec = {
            "predictor": _predictor(md, rollout.stable, config),
            "canary": [
                {
                    "predictor": _predictor(md, rollout.canary, config),
                    "trafficPercent": rollout.canary_percent,
                }
            ],
        }
    return {
        "apiVersion": f"{ISVC_GROUP}/{ISVC_VERSION}",
        "kind": "InferenceService",
        "metadata": {
            "name": name_for(name),
            "labels": labels("predictor", c.LABEL_MODEL_DEPLOYMENT, name),
            "annotations": {
                ANNOTATION_DEPLOYMENT_MODE: mode,
                ANNOTATION_STABLE_MODEL: rollout.stable.model_dump_json(by_alias=True, exclude_none=True),
            },
        },
        "spec": spec,
    }


def stable_model(isvc: dict[str, Any] | None) -> ModelSpec | None:
    """The stable model recorded on an existing InferenceService, if any."""
    raw = ((isvc or {}).get("metadata", {}).get("annotations") or {}).get(ANNOTATION_STABLE_MODEL)
    return ModelSpec.model_validate_json(raw) if raw else None


def _predictor(md: ModelDeployment, model: ModelSpec, config: OperatorConfig) -> dict[str, Any]:
    spec = md.spec
    # Only what the predictor serves: replicas, canary traffic and resources are KServe's business,
    # and an edit to them must change no pod template (that would roll every predictor pod).
    served = {
        "apiVersion": md.api_version,
        "kind": md.kind,
        "metadata": {"name": md.metadata["name"]},
        "spec": spec.model_copy(update={"model": model}).model_dump(
            by_alias=True, exclude_none=True, mode="json", include=SERVED
        ),
    }
    env = [
        {"name": c.ENV_MODEL_DEPLOYMENT, "value": json.dumps(served, separators=(",", ":"), sort_keys=True)}
    ]
    if urlsplit(model.uri).scheme in ("s3", "pvc"):
        env.append({"name": "STORAGE_URI", "value": model.uri})
    container: dict[str, Any] = {
        "name": "kserve-container",
        "image": config.inference_image,
        "imagePullPolicy": config.image_pull_policy,
        "command": ["kubeclassify"],
        "args": [
            "serve",
            "--model_name",
            md.metadata["name"],
            "--http_port",
            str(PORT),
            "--enable_grpc",
            "false",
        ],
        "ports": [{"containerPort": PORT, "protocol": "TCP"}],
        "env": env,
        "securityContext": CONTAINER_SECURITY_CONTEXT,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    storage = spec.storage
    if storage is not None:
        container["env"] += storage_env(storage.endpoint, storage.region)
        if storage.secret_name:
            container["envFrom"] = [{"secretRef": {"name": storage.secret_name}}]
    container["resources"] = container_resources(spec.resources, config)
    predictor: dict[str, Any] = {
        # On the pods too: the chart's NetworkPolicy admits only the gateway, batch pods and the
        # serving ingress to them (predictors have no auth of their own).
        "labels": labels("predictor", c.LABEL_MODEL_DEPLOYMENT, md.metadata["name"]),
        "minReplicas": spec.replicas.min,
        "maxReplicas": spec.replicas.max,
        "containers": [container],
        "securityContext": POD_SECURITY_CONTEXT,
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        **placement(spec.resources, config),
    }
    if spec.replicas.scale_target is not None:
        predictor["scaleTarget"] = spec.replicas.scale_target
    if spec.replicas.scale_metric is not None:
        predictor["scaleMetric"] = spec.replicas.scale_metric
    if storage is not None and storage.secret_name:
        predictor["serviceAccountName"] = storage_service_account_name(md.metadata["name"])
    elif storage is not None and storage.service_account_name:
        predictor["serviceAccountName"] = storage.service_account_name
    return predictor


def storage_service_account(md: ModelDeployment) -> dict[str, Any] | None:
    """For `storage.secretName`: a ServiceAccount that hands the Secret to KServe's storage initializer.

    KServe reads the S3 endpoint from the ServiceAccount's `serving.kserve.io/s3-*` annotations and
    the keys from the Secrets it lists; the user's Secret is left as it is."""
    storage = md.spec.storage
    if storage is None or not storage.secret_name:
        return None
    annotations: dict[str, str] = {}
    if storage.endpoint:
        endpoint = urlsplit(storage.endpoint)
        annotations["serving.kserve.io/s3-endpoint"] = endpoint.netloc
        annotations["serving.kserve.io/s3-usehttps"] = "1" if endpoint.scheme == "https" else "0"
    if storage.region:
        annotations["serving.kserve.io/s3-region"] = storage.region
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": storage_service_account_name(md.metadata["name"]),
            "labels": labels("model-storage", c.LABEL_MODEL_DEPLOYMENT, md.metadata["name"]),
            "annotations": annotations,
        },
        "secrets": [{"name": storage.secret_name}],
        "automountServiceAccountToken": False,
    }
