"""ClassificationBatch → an Indexed Job per run, and for a daily batch the CronJob that ticks (pure).

Each run is one Indexed Job (completions = parallelism): pod i runs the batch worker on shard i
(`JOB_COMPLETION_INDEX`), with the batch and the ModelDeployment's stable model as JSON in its
environment. The daily CronJob's pod only stamps the batch with a tick annotation (its own
ServiceAccount may patch that one object); the operator picks the date and creates the dated Job.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from kubeclassify.core import constants as c
from kubeclassify.core.policy import ENV_POLICY, for_worker, owner_of
from kubeclassify.core.resources.classification_batch import ClassificationBatch, run_id, short_name
from kubeclassify.core.resources.model_deployment import ModelDeployment, ModelSpec
from kubeclassify.core.sources import owner_prefix
from kubeclassify.operator.builders.common import (
    CONTAINER_SECURITY_CONTEXT,
    POD_SECURITY_CONTEXT,
    container_resources,
    labels,
    placement,
    storage_env,
)
from kubeclassify.operator.config import OperatorConfig

LABEL_DATE = f"{c.GROUP}/date"
ANNOTATION_DATE = f"{c.GROUP}/date"
ANNOTATION_GENERATION = f"{c.GROUP}/generation"  # the batch's, that the Job was made from
WORKER = "worker"


def job_name(batch: str, date: dt.date | None, rerun: str | None = None) -> str:
    """The run's Job: named by the run's id (`core`'s run_id)."""
    return run_id(batch, date, rerun)


def tick_name(batch: str) -> str:
    return short_name(batch, "tick", limit=52)


def batch_job(
    cb: ClassificationBatch,
    md: ModelDeployment,
    model: ModelSpec,
    config: OperatorConfig,
    date: dt.date | None,
    run_time: dt.datetime,
    predictor_url: str | None = None,
    suffix: str | None = None,
    rerun: bool = False,
    max_images: int | None = None,
) -> dict[str, Any]:
    """The Indexed Job that classifies `cb`'s images (for `date`) with `model`, `md`'s stable one,
    named by the run's id (`suffix`: a date's later run); a `rerun` classifies them again and
    replaces the published results; `max_images` is what the gateway admitted the run for."""
    name, spec = cb.metadata["name"], cb.spec
    owner = owner_of(cb.metadata.get("labels"))
    batch_json = {
        "apiVersion": cb.api_version,
        "kind": cb.kind,
        "metadata": {"name": name, **({"labels": {c.LABEL_OWNER: owner}} if owner else {})},
        "spec": _dump(spec),
    }
    model_json = {
        "apiVersion": md.api_version,
        "kind": md.kind,
        "metadata": {"name": md.metadata["name"]},
        "spec": _dump(md.spec.model_copy(update={"model": model})),
    }
    args = ["--run-time", run_time.isoformat()]
    if date is not None:
        args = ["--date", date.isoformat(), *args]
    if rerun:
        args += ["--rerun", suffix or "rerun"]
    if max_images is not None:
        args += ["--max-images", str(max_images)]
    if owner:  # a gateway user's batch: the worker keeps its rows to the owner's images
        args += ["--owner-prefix", owner_prefix(config.gateway_images_uri, owner)]
    env = [
        {
            "name": c.ENV_BATCH,
            "value": json.dumps(batch_json, separators=(",", ":"), sort_keys=True),
        },
        {
            "name": c.ENV_MODEL_DEPLOYMENT,
            "value": json.dumps(model_json, separators=(",", ":"), sort_keys=True),
        },
    ]
    if predictor_url:
        env.append({"name": c.ENV_PREDICTOR_URL, "value": predictor_url})
    worker_policy = for_worker(config.policy, cb.metadata.get("namespace", ""))
    env.append({"name": ENV_POLICY, "value": worker_policy.model_dump_json(by_alias=True)})
    storage = md.spec.storage
    container: dict[str, Any] = {
        "name": WORKER,
        "image": config.inference_image,
        "imagePullPolicy": config.image_pull_policy,
        "command": ["python", "-m", "kubeclassify.inference.batch"],
        "args": args,
        "env": env + (storage_env(storage.endpoint, storage.region) if storage else []),
        "securityContext": CONTAINER_SECURITY_CONTEXT,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if storage is not None and storage.secret_name:
        container["envFrom"] = [{"secretRef": {"name": storage.secret_name}}]
    container["resources"] = container_resources(spec.resources, config)
    pod_labels = {**labels("batch", c.LABEL_CLASSIFICATION_BATCH, name)}
    if date is not None:
        pod_labels[LABEL_DATE] = date.isoformat()
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": POD_SECURITY_CONTEXT,
        "automountServiceAccountToken": False,
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        **placement(spec.resources, config),
    }
    if storage is not None and storage.service_account_name:
        pod["serviceAccountName"] = storage.service_account_name
    job_spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": spec.parallelism,
        "parallelism": spec.parallelism,
        "backoffLimitPerIndex": spec.retries,
        "podFailurePolicy": {
            "rules": [
                # Bad input or too many unreadable images: every retry would end the same way.
                {
                    "action": "FailJob",
                    "onExitCodes": {"containerName": WORKER, "operator": "In", "values": list(c.EXIT_FINAL)},
                },
                # Evictions, preemption and node loss are not the batch's fault: not counted.
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            ]
        },
        "ttlSecondsAfterFinished": config.job_ttl_seconds,
        "template": {"metadata": {"labels": pod_labels}, "spec": pod},
    }
    if spec.deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.deadline_seconds
    metadata: dict[str, Any] = {"name": job_name(name, date, suffix), "labels": pod_labels, "annotations": {}}
    if date is not None:
        metadata["annotations"][ANNOTATION_DATE] = date.isoformat()
    if cb.metadata.get("generation") is not None:
        metadata["annotations"][ANNOTATION_GENERATION] = str(cb.metadata["generation"])
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}


def tick_cronjob(cb: ClassificationBatch, config: OperatorConfig) -> dict[str, Any]:
    """The CronJob that stamps `cb` with a tick on its schedule; the operator does the rest."""
    name, schedule = cb.metadata["name"], cb.spec.schedule
    assert schedule is not None
    tick_labels = labels("tick", c.LABEL_CLASSIFICATION_BATCH, name)
    container = {
        "name": "tick",
        "image": config.operator_image,
        "imagePullPolicy": config.image_pull_policy,
        "command": ["kubeclassify", "operator", "tick", name],
        "env": [{"name": "NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
        "securityContext": CONTAINER_SECURITY_CONTEXT,
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": tick_name(name), "labels": tick_labels},
        "spec": {
            "schedule": schedule.cron,
            "timeZone": schedule.time_zone,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": config.starting_deadline_seconds,
            "suspend": schedule.suspend,
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {
                "metadata": {"labels": tick_labels},
                "spec": {
                    "backoffLimit": 3,
                    "ttlSecondsAfterFinished": 3600,
                    "template": {
                        "metadata": {"labels": tick_labels},
                        "spec": {
                            "restartPolicy": "OnFailure",
                            "serviceAccountName": tick_name(name),
                            "securityContext": POD_SECURITY_CONTEXT,
                            "containers": [container],
                        },
                    },
                },
            },
        },
    }


def tick_access(cb: ClassificationBatch) -> list[dict[str, Any]]:
    """The tick pod's ServiceAccount, and a Role and RoleBinding that let it patch this batch only."""
    name = cb.metadata["name"]
    meta = {"name": tick_name(name), "labels": labels("tick", c.LABEL_CLASSIFICATION_BATCH, name)}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": dict(meta)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": dict(meta),
            "rules": [
                {
                    "apiGroups": [c.GROUP],
                    "resources": [c.PLURALS[c.CLASSIFICATION_BATCH]],
                    "resourceNames": [name],
                    "verbs": ["get", "patch"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": dict(meta),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": tick_name(name)},
            "subjects": [{"kind": "ServiceAccount", "name": tick_name(name)}],
        },
    ]


def _dump(model: Any) -> dict[str, Any]:
    return dict(model.model_dump(by_alias=True, exclude_none=True, mode="json"))
