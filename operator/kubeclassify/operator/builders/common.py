"""What every built object shares: labels, the restricted security context, resources."""

from __future__ import annotations

from typing import Any

from kubeclassify.core import constants as c
from kubeclassify.core.resources.common import ResourcesSpec, Toleration
from kubeclassify.operator.config import OperatorConfig


def labels(component: str, owner_label: str, owner: str) -> dict[str, str]:
    """The labels of a child object: the app.kubernetes.io set and the owning resource's name."""
    return {
        c.LABEL_NAME: "kubeclassify",
        c.LABEL_COMPONENT: component,
        c.LABEL_MANAGED_BY: "kubeclassify-operator",
        c.LABEL_PART_OF: "kubeclassify",
        owner_label: owner,
    }


# The `restricted` Pod Security profile, for every pod we create.
POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def container_resources(spec: ResourcesSpec, config: OperatorConfig) -> dict[str, Any]:
    """Requests and limits, the resource's own or else the operator's defaults, so that every pod has
    both: memory is both (no overcommit surprises), CPU a request, GPUs limits."""
    memory = str(spec.memory or config.default_memory)
    limits = {"memory": memory, **({"nvidia.com/gpu": str(spec.gpu)} if spec.gpu else {})}
    return {"requests": {"cpu": str(spec.cpu or config.default_cpu), "memory": memory}, "limits": limits}


def placement(spec: ResourcesSpec, config: OperatorConfig) -> dict[str, Any]:
    """nodeSelector and tolerations; pods with GPUs also get the configured GPU-node ones."""
    selector = dict(spec.node_selector)
    tolerations = list(spec.tolerations)
    if spec.gpu:
        selector = {**config.gpu_node_selector, **selector}
        tolerations += [t for t in config.gpu_tolerations if t not in tolerations]
    out: dict[str, Any] = {}
    if selector:
        out["nodeSelector"] = selector
    if tolerations:
        out["tolerations"] = [_toleration(t) for t in tolerations]
    return out


def _toleration(t: Toleration) -> dict[str, Any]:
    return t.model_dump(by_alias=True, exclude_none=True)


def storage_env(endpoint: str | None, region: str | None) -> list[dict[str, str]]:
    """Our S3 settings for an S3-compatible endpoint; credentials come from envFrom or the pod's identity."""
    env = []
    if endpoint:
        env.append({"name": "KUBECLASSIFY_S3__ENDPOINT_URL", "value": endpoint})
    if region:
        env.append({"name": "KUBECLASSIFY_S3__REGION", "value": region})
    return env
