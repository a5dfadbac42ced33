"""ClassificationBatches as Kubernetes resources, for the CLI with a kubeconfig: create one from a
file (checked against the model first, so a bad spec is refused here with the field named), read its
status, and read its results from S3 (the settings' `KUBECLASSIFY_S3__*`)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kubeclassify.cli.client import until_finished
from kubeclassify.core.constants import API_VERSION, CLASSIFICATION_BATCH, PLURALS
from kubeclassify.core.kubeapi import CustomObjects, api_client
from kubeclassify.core.resources.classification_batch import ClassificationBatch
from kubeclassify.core.settings import Settings
from kubeclassify.core.storage import ObjectNotFound, ObjectStore, StorageError


class ClusterError(RuntimeError):
    """The API server refused, or the resource is not what it should be."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Batches:
    """The ClassificationBatches of one namespace, through a kubeconfig."""

    def __init__(self, kubeconfig: str | None, namespace: str) -> None:
        """`kubeconfig` None or empty: found as `core.kubeapi` finds it ($KUBECONFIG, in a pod its
        service account, else ~/.kube/config)."""
        from kubernetes.config.config_exception import ConfigException

        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        try:
            self.client = api_client(kubeconfig)
        except (ConfigException, OSError, ValueError) as e:
            raise ClusterError(0, f"cannot use the kubeconfig {where}: {e}") from e
        self.objects = CustomObjects(self.client, namespace, PLURALS[CLASSIFICATION_BATCH], timeout=None)

    def _call(self, verb: str, *args: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return getattr(self.objects, verb)(*args)
        except ApiException as e:
            raise ClusterError(e.status or 0, f"{e.status} {e.reason}: {e.body or ''}".strip()) from e
        except HTTPError as e:
            host = self.client.configuration.host
            raise ClusterError(0, f"cannot reach the Kubernetes API at {host}: {e}") from e

    def __enter__(self) -> Batches:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    # The same shape as the gateway client's batch methods, so the CLI treats both alike.

    def submit_batch(self, path: Path) -> dict[str, Any]:
        """Create the ClassificationBatch in `path` (YAML or JSON) after checking it."""
        body = yaml.safe_load(path.read_text())
        if not isinstance(body, dict) or body.get("kind") != CLASSIFICATION_BATCH:
            raise ClusterError(400, f"{path} is not a {CLASSIFICATION_BATCH}")
        body.setdefault("apiVersion", API_VERSION)
        try:
            ClassificationBatch.model_validate(body)
        except ValidationError as e:
            raise ClusterError(422, f"{path}: {e}") from e
        return summary(self._call("create", body))

    def batch(self, name: str) -> dict[str, Any]:
        body = self._call("get", name)
        if body is None:
            where = self.objects.namespace
            raise ClusterError(404, f"404 Not Found: no {CLASSIFICATION_BATCH} {name} in {where}")
        return summary(body)

    def wait_for_batch(
        self, name: str, every: float = 2.0, on_progress: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        """Poll the batch until its run has finished."""
        return until_finished(lambda: self.batch(name), every, on_progress)

    def results_csv(self, name: str, date: str | None = None) -> Iterator[bytes]:
        """The results object of the batch's current or last run, or of one date of a daily batch,
        read from S3."""
        if date is None:
            uri = self.batch(name)["output_uri"]
            if not uri:
                raise ClusterError(409, f"{name} has no results yet")
        else:
            uri = dated_output(self._call("get", name) or {}, date)
        try:
            opened = ObjectStore(Settings().s3).open(uri)
        except ObjectNotFound as e:
            raise ClusterError(404, f"{name} has no results at {uri}") from e
        except StorageError as e:
            raise ClusterError(0, f"cannot read {uri}: {e}") from e
        with opened as f:
            yield from iter(lambda: f.read(1 << 20), b"")


def dated_output(body: dict[str, Any], date: str) -> str:
    """Where a daily batch publishes one date's results (a rerun of the date replaces them)."""
    try:
        day = dt.date.fromisoformat(date)
    except ValueError as e:
        raise ClusterError(400, f"--date {date!r} is not a date (YYYY-MM-DD)") from e
    spec = body.get("spec") or {}
    if not spec.get("schedule"):
        name = (body.get("metadata") or {}).get("name")
        raise ClusterError(409, f"{name} is not a daily batch: it has one run's results, not one per date")
    return str(spec["output"]["uri"].format(date=day.isoformat()))  # a schedule's has {date}


def summary(body: dict[str, Any]) -> dict[str, Any]:
    """A batch as the gateway's batch commands show one: name, state, counts."""
    status = body.get("status") or {}
    counts = status.get("counts") or {}
    ended = [c for c in status.get("conditions") or [] if c.get("type") == "Succeeded"]
    return {
        "name": body["metadata"]["name"],
        "state": status.get("phase") or "Pending",
        "message": ended[0].get("message", "") if ended else "",
        "counts": {k: counts.get(k, 0) for k in ("total", "classified", "failed", "skipped")},
        "output_uri": status.get("outputUri"),
        "last_processed_date": status.get("lastProcessedDate"),
        "next_date": status.get("nextDate"),
    }
