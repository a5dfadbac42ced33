"""The RBAC the operator needs, declared next to the code that needs it.

`uses()` marks each function in `kube.py` with the verbs it sends; Kopf's own needs are listed
here. A test checks that the declared rules are exactly what the code uses, and the chart renders
them (`kubeclassify operator rbac`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from kubeclassify.core import constants as c

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, order=True)
class Permission:
    """One verb on one resource (`resource/subresource` allowed); cluster-scoped when `cluster`."""

    group: str
    resource: str
    verb: str
    cluster: bool = False


USED: set[Permission] = set()


def record(group: str, resource: str, *verbs: str) -> None:
    """Record that the operator's code sends these verbs."""
    USED.update(Permission(group, resource, v) for v in verbs)


def uses(group: str, resource: str, *verbs: str) -> Callable[[F], F]:
    """Record that the decorated function sends these verbs."""

    def mark(fn: F) -> F:
        record(group, resource, *verbs)
        return fn

    return mark


def _perms(group: str, resource: str, *verbs: str, cluster: bool = False) -> set[Permission]:
    return {Permission(group, resource, v, cluster) for v in verbs}


MD, CB = c.PLURALS[c.MODEL_DEPLOYMENT], c.PLURALS[c.CLASSIFICATION_BATCH]

# Kopf itself: it posts Events and keeps its progress in annotations of the resources it handles;
# when it watches every namespace it also follows CRDs and namespaces as they come and go (both
# cluster-scoped; an operator for named namespaces turns that scanning off and needs neither).
FRAMEWORK: set[Permission] = (
    _perms("apiextensions.k8s.io", "customresourcedefinitions", "list", "watch", cluster=True)
    | _perms("", "namespaces", "list", "watch", cluster=True)
    | _perms("", "events", "create")
)

DECLARED: set[Permission] = FRAMEWORK | (
    _perms(c.GROUP, MD, "get", "list", "watch", "patch")
    | _perms(c.GROUP, f"{MD}/status", "patch")
    | _perms(c.GROUP, CB, "get", "list", "watch", "patch")
    | _perms(c.GROUP, f"{CB}/status", "patch")
    | _perms("serving.kserve.io", "inferenceservices", "get", "list", "watch", "create", "patch")
    | _perms("batch", "jobs", "get", "list", "watch", "create")
    | _perms("batch", "cronjobs", "list", "watch", "create", "patch")  # watched: one deleted is made again
    | _perms("", "pods", "list")
    | _perms("", "pods/log", "get")  # a running batch pod's progress lines
    | _perms("", "serviceaccounts", "create", "patch")
    # Server-side apply (patch, and create for a new object) for what the operator owns. The tick's
    # Role grants patch on one ClassificationBatch: the operator holds that itself.
    | _perms("rbac.authorization.k8s.io", "roles", "create", "patch")
    | _perms("rbac.authorization.k8s.io", "rolebindings", "create", "patch")
    | _perms("", "secrets", "get")
)


def rules(cluster_wide: bool) -> list[dict[str, Any]]:
    """PolicyRules for a Role in each watched namespace, or for the ClusterRole of an operator
    that watches every namespace (the namespaced permissions, everywhere, and the cluster ones)."""
    grouped: dict[tuple[str, str], set[str]] = {}
    for p in DECLARED:
        if cluster_wide or not p.cluster:
            grouped.setdefault((p.group, p.resource), set()).add(p.verb)
    by_verbs: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for (group, resource), verbs in sorted(grouped.items()):
        by_verbs.setdefault((group, tuple(sorted(verbs))), []).append(resource)
    return [
        {"apiGroups": [group], "resources": sorted(resources), "verbs": list(verbs)}
        for (group, verbs), resources in sorted(by_verbs.items())
    ]
