"""The few Kubernetes API calls the handlers make, each marked with the RBAC it needs.

Appliers are idempotent: an object is created when missing and replaced only when what we own of it
(labels, annotations, owner references, spec) differs, so a restart mid-reconcile repeats nothing."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubeclassify.core import constants as c
from kubeclassify.operator.builders.inference_service import ISVC_GROUP, ISVC_PLURAL, ISVC_VERSION
from kubeclassify.operator.rbac import record, uses

# Kinds `Kube.apply` handles: RBAC group and resource, the fields we own besides metadata, the
# typed API and its method suffix.
APPLIED: dict[str, tuple[str, str, tuple[str, ...], str, str]] = {
    "ServiceAccount": (
        "",
        "serviceaccounts",
        ("secrets", "automountServiceAccountToken"),
        "core",
        "service_account",
    ),
    "Role": ("rbac.authorization.k8s.io", "roles", ("rules",), "rbac", "role"),
    "RoleBinding": (
        "rbac.authorization.k8s.io",
        "rolebindings",
        ("roleRef", "subjects"),
        "rbac",
        "role_binding",
    ),
    "CronJob": ("batch", "cronjobs", ("spec",), "batch", "cron_job"),
}
for _group, _resource, *_ in APPLIED.values():
    record(_group, _resource, "get", "create", "update")


class Kube:
    """Typed access to the objects the operator reads and writes."""

    def __init__(self, api: client.ApiClient, request_timeout: float = 60.0) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.rbac = client.RbacAuthorizationV1Api(api)
        self.timeout = request_timeout

    # -- ModelDeployments ---------------------------------------------------------------------

    @uses(c.GROUP, c.PLURALS[c.MODEL_DEPLOYMENT], "get")
    def get_model_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _none_if_missing(
            lambda: self.custom.get_namespaced_custom_object(
                c.GROUP,
                c.VERSION,
                namespace,
                c.PLURALS[c.MODEL_DEPLOYMENT],
                name,
                _request_timeout=self.timeout,
            )
        )

    @uses(c.GROUP, f"{c.PLURALS[c.MODEL_DEPLOYMENT]}/status", "patch")
    def patch_model_deployment_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(
            c.GROUP,
            c.VERSION,
            namespace,
            c.PLURALS[c.MODEL_DEPLOYMENT],
            name,
            {"status": status},
            _request_timeout=self.timeout,
        )

    # -- InferenceServices ---------------------------------------------------------------------

    @uses(ISVC_GROUP, ISVC_PLURAL, "get")
    def get_inference_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _none_if_missing(
            lambda: self.custom.get_namespaced_custom_object(
                ISVC_GROUP, ISVC_VERSION, namespace, ISVC_PLURAL, name, _request_timeout=self.timeout
            )
        )

    @uses(ISVC_GROUP, ISVC_PLURAL, "create", "update")
    def apply_inference_service(
        self, namespace: str, desired: dict[str, Any], current: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Create `desired`, or replace `current` with it when they differ; returns the stored object."""
        name = desired["metadata"]["name"]
        if current is None:
            try:
                created: Any = self.custom.create_namespaced_custom_object(
                    ISVC_GROUP, ISVC_VERSION, namespace, ISVC_PLURAL, desired, _request_timeout=self.timeout
                )
                return created
            except ApiException as e:
                if e.status != 409:
                    raise
            # Created meanwhile (another event for the same object): replace it instead.
            current = self.get_inference_service(namespace, name)
            if current is None:
                raise kopf.TemporaryError(
                    f"InferenceService {name} was created and deleted meanwhile", delay=1
                )
        merged = _merged(current, desired)
        if merged is current:
            return current
        replaced: Any = self.custom.replace_namespaced_custom_object(
            ISVC_GROUP, ISVC_VERSION, namespace, ISVC_PLURAL, name, merged, _request_timeout=self.timeout
        )
        return replaced

    # -- Namespaced objects we own: ServiceAccounts, RBAC for ticks, CronJobs -----------------

    def apply(self, namespace: str, desired: Any) -> None:
        """Create `desired` (one of APPLIED's kinds), or replace it when what we own of it differs."""
        kind = desired["kind"]
        _, _, fields, api_name, suffix = APPLIED[kind]
        api = getattr(self, api_name)
        name = desired["metadata"]["name"]
        current = _none_if_missing(
            lambda: getattr(api, f"read_namespaced_{suffix}")(name, namespace, _request_timeout=self.timeout)
        )
        if current is None:
            try:
                getattr(api, f"create_namespaced_{suffix}")(namespace, desired, _request_timeout=self.timeout)
                return
            except ApiException as e:
                if e.status != 409:
                    raise
            current = getattr(api, f"read_namespaced_{suffix}")(
                name, namespace, _request_timeout=self.timeout
            )
        current_dict = api.api_client.sanitize_for_serialization(current)
        merged: Any = _merged(current_dict, desired, fields=fields)
        if merged is not current_dict:
            getattr(api, f"replace_namespaced_{suffix}")(
                name, namespace, merged, _request_timeout=self.timeout
            )

    # -- ClassificationBatches, Jobs and pods -----------------------------------------------------

    @uses(c.GROUP, c.PLURALS[c.CLASSIFICATION_BATCH], "get")
    def get_classification_batch(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _none_if_missing(
            lambda: self.custom.get_namespaced_custom_object(
                c.GROUP,
                c.VERSION,
                namespace,
                c.PLURALS[c.CLASSIFICATION_BATCH],
                name,
                _request_timeout=self.timeout,
            )
        )

    @uses(c.GROUP, f"{c.PLURALS[c.CLASSIFICATION_BATCH]}/status", "patch")
    def patch_classification_batch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(
            c.GROUP,
            c.VERSION,
            namespace,
            c.PLURALS[c.CLASSIFICATION_BATCH],
            name,
            {"status": status},
            _request_timeout=self.timeout,
        )

    @uses(c.GROUP, c.PLURALS[c.CLASSIFICATION_BATCH], "patch")
    def annotate_classification_batch(
        self, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> None:
        """Set annotations (None removes one)."""
        self.custom.patch_namespaced_custom_object(
            c.GROUP,
            c.VERSION,
            namespace,
            c.PLURALS[c.CLASSIFICATION_BATCH],
            name,
            {"metadata": {"annotations": annotations}},
            _request_timeout=self.timeout,
        )

    @uses("batch", "jobs", "get")
    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        job = _none_if_missing(
            lambda: self.batch.read_namespaced_job(name, namespace, _request_timeout=self.timeout)
        )
        return None if job is None else self.batch.api_client.sanitize_for_serialization(job)

    @uses("batch", "jobs", "create")
    def create_job(self, namespace: str, job: Any) -> dict[str, Any]:
        """Create the run's Job; an existing one (a restart mid-reconcile) is returned as it is."""
        try:
            created = self.batch.create_namespaced_job(namespace, job, _request_timeout=self.timeout)
        except ApiException as e:
            if e.status != 409:
                raise
            existing = self.get_job(namespace, job["metadata"]["name"])
            if existing is None:
                raise
            return existing
        return dict(self.batch.api_client.sanitize_for_serialization(created))

    @uses("", "pods", "list")
    def job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        pods = self.core.list_namespaced_pod(
            namespace, label_selector=f"batch.kubernetes.io/job-name={job}", _request_timeout=self.timeout
        )
        return list(self.core.api_client.sanitize_for_serialization(pods).get("items") or [])

    @uses("", "secrets", "get")
    def secret_value(self, namespace: str, name: str, key: str) -> bytes | None:
        """One key of a Secret (None when the Secret or the key is missing); never logged."""
        secret = _none_if_missing(
            lambda: self.core.read_namespaced_secret(name, namespace, _request_timeout=self.timeout)
        )
        if secret is None or key not in (secret.data or {}):
            return None
        return base64.b64decode(secret.data[key])

    @uses("", "secrets", "get")
    def secret_labels(self, namespace: str, name: str) -> dict[str, str] | None:
        """The labels of a Secret (None when it does not exist); its contents are not read."""
        found = _none_if_missing(
            lambda: self.core.read_namespaced_secret(name, namespace, _request_timeout=self.timeout)
        )
        return None if found is None else dict(found.metadata.labels or {})

    @uses("", "secrets", "get")
    def secret_exists(self, namespace: str, name: str) -> bool:
        """Whether the Secret exists; its contents are never read into logs or status."""
        found = _none_if_missing(
            lambda: self.core.read_namespaced_secret(name, namespace, _request_timeout=self.timeout)
        )
        return found is not None


def _none_if_missing(call: Any) -> Any:
    try:
        return call()
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def _merged(
    current: dict[str, Any], desired: dict[str, Any], fields: tuple[str, ...] = ("spec",)
) -> dict[str, Any]:
    """`current` with our labels, annotations, owner references and `fields` from `desired`;
    `current` itself (the same object) when nothing would change."""
    meta = current.get("metadata", {})
    want = desired["metadata"]
    labels = {**(meta.get("labels") or {}), **want.get("labels", {})}
    annotations = {**(meta.get("annotations") or {}), **want.get("annotations", {})}
    owners = want.get("ownerReferences", meta.get("ownerReferences"))
    same = (
        labels == (meta.get("labels") or {})
        and annotations == (meta.get("annotations") or {})
        and owners == meta.get("ownerReferences")
        and all(current.get(f) == desired.get(f) for f in fields)
    )
    if same:
        return current
    merged = {**current, "metadata": {**meta, "labels": labels, "annotations": annotations}}
    if owners is not None:
        merged["metadata"]["ownerReferences"] = owners
    for f in fields:
        if f in desired:
            merged[f] = desired[f]
        else:
            merged.pop(f, None)
    return merged
