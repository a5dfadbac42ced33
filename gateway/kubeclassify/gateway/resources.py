"""The ClassificationBatches the Kubernetes backend creates for gateway batches and schedules (pure)."""

from __future__ import annotations

from typing import Any

from kubeclassify.core import constants as c
from kubeclassify.core.resources.classification_batch import Admission
from kubeclassify.core.storage import join
from kubeclassify.gateway.batches import BatchRecord, failed_fraction_allowed


def spec_of(record: BatchRecord, config: Any) -> dict[str, Any]:
    """The ClassificationBatch spec of a gateway batch (the same for both backends)."""
    if record.column == "url":
        source: dict[str, Any] = {"urls": {"uri": record.input_uri, "column": "url"}}
    elif record.column == "manifest":
        source = {"manifest": config.manifest.to_k8s()}
    else:  # paths under the owner's images (core's owner_prefix): the worker resolves each one
        source = {"urls": {"uri": record.input_uri, "column": "path"}}
    return {
        "modelRef": {"name": record.model},
        "input": source,
        **({"date": record.date} if record.date else {}),
        "output": {"uri": record.output_uri, "format": "csv"},
        "mode": "remote",
        "maxFailedFraction": failed_fraction_allowed(record, config),
    }


def batch_resource(record: BatchRecord, config: Any) -> dict[str, Any]:
    """The ClassificationBatch the kubernetes backend creates for a gateway batch: its first run
    admitted already, for the images reserved at creation."""
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.CLASSIFICATION_BATCH,
        "metadata": {
            "name": record.name,
            "namespace": config.namespace,
            "labels": {c.LABEL_OWNER: record.owner, c.LABEL_MANAGED_BY: c.MANAGED_BY_GATEWAY},
            "annotations": Admission(run=record.run_id, images=record.counts.total).annotation(),
        },
        "spec": spec_of(record, config),
    }


def schedule_resource(schedule: Any, config: Any) -> dict[str, Any]:
    """The scheduled ClassificationBatch the kubernetes backend creates for a gateway schedule; each
    run writes `<batches_uri>/<owner>/<name>/<date>/results.csv`."""
    spec: dict[str, Any] = {
        "modelRef": {"name": schedule.model},
        "input": {"manifest": config.manifest.to_k8s()},
        "schedule": {
            "cron": schedule.cron,
            "timeZone": schedule.time_zone,
            "catchUp": schedule.catch_up,
            "suspend": schedule.paused,
            **({"startDate": schedule.start_date} if schedule.start_date else {}),
        },
        "output": {"uri": join(config.batches_uri, schedule.owner, schedule.name) + "/{date}/results.csv"},
        "mode": "remote",
        "maxFailedFraction": config.max_failed_fraction,
    }
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.CLASSIFICATION_BATCH,
        "metadata": {
            "name": schedule.name,
            "namespace": config.namespace,
            "labels": {c.LABEL_OWNER: schedule.owner, c.LABEL_MANAGED_BY: c.MANAGED_BY_GATEWAY},
        },
        "spec": spec,
    }
