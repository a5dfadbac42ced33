"""The few Kubernetes API calls the handlers make, each marked with the RBAC it needs.

Appliers are idempotent: an object is created when missing and replaced only when what we own of it
(labels, annotations, owner references, spec) differs, so a restart mid-reconcile repeats nothing."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubeclassify.core import constants as c
from kubeclassify.core.kubeapi import CustomObjects, none_if_missing
from kubeclassify.operator.builders.inference_service import ISVC_GROUP, ISVC_PLURAL, ISVC_VERSION
from kubeclassify.operator.rbac import record, uses

# Kinds `ClusterApi.apply` handles: RBAC group and resource, the fields we own besides metadata, the
# typed API and its method suffix.
# Server-side apply, as the operator's field manager: the fields it sets are its own, and fields
# others set (an HPA's replicas, KServe's defaults, a user's extra labels) are left alone. `force`
# takes back a field someone else changed: what the operator sets is the desired state.
FIELD_MANAGER = "kubeclassify-operator"
APPLY: dict[str, Any] = {
    "field_manager": FIELD_MANAGER,
    "force": True,
    "_content_type": "application/apply-patch+yaml",
}

# The kinds applied besides InferenceServices: (group, resource, API attribute, method suffix).
APPLIED: dict[str, tuple[str, str, str, str]] = {
    "ServiceAccount": ("", "serviceaccounts", "core", "service_account"),
    "Role": ("rbac.authorization.k8s.io", "roles", "rbac", "role"),
    "RoleBinding": ("rbac.authorization.k8s.io", "rolebindings", "rbac", "role_binding"),
    "CronJob": ("batch", "cronjobs", "batch", "cron_job"),
}
for _group, _resource, *_ in APPLIED.values():
    record(_group, _resource, "create", "patch")  # server-side apply: patch, and create when new


class ClusterApi:
    """Typed access to the objects the operator reads and writes."""

    def __init__(self, api: client.ApiClient, request_timeout: float = 60.0) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.rbac = client.RbacAuthorizationV1Api(api)
        self.timeout = request_timeout

    def _objects(
        self, namespace: str, plural: str, group: str = c.GROUP, version: str = c.VERSION
    ) -> CustomObjects:
        return CustomObjects(self.api, namespace, plural, group, version, self.timeout)

    # -- ModelDeployments ---------------------------------------------------------------------

    @uses(c.GROUP, c.PLURALS[c.MODEL_DEPLOYMENT], "get")
    def get_model_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._objects(namespace, c.PLURALS[c.MODEL_DEPLOYMENT]).get(name)

    @uses(c.GROUP, f"{c.PLURALS[c.MODEL_DEPLOYMENT]}/status", "patch")
    def patch_model_deployment_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self._objects(namespace, c.PLURALS[c.MODEL_DEPLOYMENT]).patch_status(name, {"status": status})

    # -- InferenceServices ---------------------------------------------------------------------

    @uses(ISVC_GROUP, ISVC_PLURAL, "get")
    def get_inference_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._objects(namespace, ISVC_PLURAL, ISVC_GROUP, ISVC_VERSION).get(name)

    @uses(ISVC_GROUP, ISVC_PLURAL, "create", "patch")
    def apply_inference_service(self, namespace: str, desired: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply `desired`; returns the stored object."""
        return self._objects(namespace, ISVC_PLURAL, ISVC_GROUP, ISVC_VERSION).apply(desired, FIELD_MANAGER)

    # -- Namespaced objects we own: ServiceAccounts, RBAC for ticks, CronJobs -----------------

    def apply(self, namespace: str, desired: Any) -> None:
        """Server-side apply `desired` (one of APPLIED's kinds)."""
        _, _, api_name, suffix = APPLIED[desired["kind"]]
        patch = getattr(getattr(self, api_name), f"patch_namespaced_{suffix}")
        patch(desired["metadata"]["name"], namespace, desired, **APPLY, _request_timeout=self.timeout)

    # -- ClassificationBatches, Jobs and pods -----------------------------------------------------

    @uses(c.GROUP, c.PLURALS[c.CLASSIFICATION_BATCH], "get")
    def get_classification_batch(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._objects(namespace, c.PLURALS[c.CLASSIFICATION_BATCH]).get(name)

    @uses(c.GROUP, f"{c.PLURALS[c.CLASSIFICATION_BATCH]}/status", "patch")
    def patch_classification_batch_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str | None = None
    ) -> dict[str, Any]:
        """Patch the status; with `resource_version`, only if the batch is still at that version (the
        API answers 409 Conflict otherwise). The batch as written."""
        guard = {"metadata": {"resourceVersion": resource_version}} if resource_version else {}
        batches = self._objects(namespace, c.PLURALS[c.CLASSIFICATION_BATCH])
        return batches.patch_status(name, {**guard, "status": status})

    @uses(c.GROUP, c.PLURALS[c.CLASSIFICATION_BATCH], "patch")
    def annotate_classification_batch(
        self, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> None:
        """Set annotations (None removes one)."""
        batches = self._objects(namespace, c.PLURALS[c.CLASSIFICATION_BATCH])
        batches.patch(name, {"metadata": {"annotations": dict(annotations)}})

    @uses("batch", "jobs", "get")
    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        job = none_if_missing(
            lambda: self.batch.read_namespaced_job(name, namespace, _request_timeout=self.timeout)
        )
        return None if job is None else self.batch.api_client.sanitize_for_serialization(job)

    @uses("batch", "jobs", "create")
    def create_job(self, namespace: str, job: Any) -> tuple[dict[str, Any], bool]:
        """Create the run's Job; an existing one (a step run again) is returned as it is. The Job,
        and whether this call made it."""
        try:
            created = self.batch.create_namespaced_job(namespace, job, _request_timeout=self.timeout)
        except ApiException as e:
            if e.status != 409:
                raise
            existing = self.get_job(namespace, job["metadata"]["name"])
            if existing is None:
                raise
            return existing, False
        return dict(self.batch.api_client.sanitize_for_serialization(created)), True

    @uses("", "pods", "list")
    def job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        pods = self.core.list_namespaced_pod(
            namespace, label_selector=f"batch.kubernetes.io/job-name={job}", _request_timeout=self.timeout
        )
        return list(self.core.api_client.sanitize_for_serialization(pods).get("items") or [])

    @uses("", "pods/log", "get")
    def pod_log_tail(self, namespace: str, pod: str, lines: int, limit_bytes: int) -> str:
        """The last `lines` lines of a pod's log, at most `limit_bytes` ("" when there is none yet)."""
        try:
            text = self.core.read_namespaced_pod_log(
                pod,
                namespace,
                tail_lines=lines,
                limit_bytes=limit_bytes,
                _request_timeout=self.timeout,
            )
        except ApiException as e:
            if e.status in (400, 404):  # the container has not started, or the pod is gone
                return ""
            raise
        return text if isinstance(text, str) else ""

    @uses("", "secrets", "get")
    def secret_value(self, namespace: str, name: str, key: str) -> bytes | None:
        """One key of a Secret (None when the Secret or the key is missing); never logged."""
        secret = none_if_missing(
            lambda: self.core.read_namespaced_secret(name, namespace, _request_timeout=self.timeout)
        )
        if secret is None or key not in (secret.data or {}):
            return None
        return base64.b64decode(secret.data[key])

    @uses("", "secrets", "get")
    def secret_labels(self, namespace: str, name: str) -> dict[str, str] | None:
        """The labels of a Secret (None when it does not exist); its contents are not read."""
        found = none_if_missing(
            lambda: self.core.read_namespaced_secret(name, namespace, _request_timeout=self.timeout)
        )
        return None if found is None else dict(found.metadata.labels or {})

    @uses("", "secrets", "get")
    def secret_exists(self, namespace: str, name: str) -> bool:
        """Whether the Secret exists; its contents are never read into logs or status."""
        found = none_if_missing(
            lambda: self.core.read_namespaced_secret(name, namespace, _request_timeout=self.timeout)
        )
        return found is not None
