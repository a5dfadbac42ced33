"""Every Kopf handler of the operator, each a thin call into `handlers/`.

Run it with `kubeclassify operator run`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException
from prometheus_client import start_http_server

from kubeclassify.core import constants as c
from kubeclassify.core.kubeapi import api_client
from kubeclassify.operator import metrics
from kubeclassify.operator.builders.inference_service import ISVC_GROUP, ISVC_PLURAL, ISVC_VERSION
from kubeclassify.operator.config import OperatorSettings
from kubeclassify.operator.handlers import classification_batch, model_deployment
from kubeclassify.operator.handlers.status import Problem, as_kopf_error
from kubeclassify.operator.kube import ClusterApi

MD = (c.GROUP, c.VERSION, c.PLURALS[c.MODEL_DEPLOYMENT])
CB = (c.GROUP, c.VERSION, c.PLURALS[c.CLASSIFICATION_BATCH])


@kopf.on.startup()
def operator_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Configure Kopf once: progress in annotations, our finalizer, timeouts, a worker limit."""
    config = memo.get("config") or OperatorSettings().operator
    # Watching named namespaces needs no cluster-wide reads (of namespaces and CRDs): a Role in
    # each namespace is enough. Watching all of them observes both, to follow CRDs as they change.
    settings.scanning.disabled = bool(config.namespaces)
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=c.KOPF_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = c.FINALIZER
    settings.posting.level = 100  # Events are posted explicitly, on transitions, never from log lines
    settings.batching.worker_limit = config.worker_limit
    settings.networking.request_timeout = config.request_timeout
    settings.watching.server_timeout = config.watch_timeout
    settings.watching.client_timeout = config.watch_timeout + 30
    settings.execution.max_workers = config.handler_threads
    memo.config = config
    memo.kube = ClusterApi(api_client(), config.request_timeout)
    start_http_server(config.metrics_port)


@kopf.on.resume(*MD)
@kopf.on.create(*MD)
@kopf.on.update(*MD)
def model_deployment_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Create or update the ModelDeployment's InferenceService; its status follows."""
    key = f"{body.metadata.namespace}/{body.metadata.name}"
    with metrics.reconciling(c.MODEL_DEPLOYMENT):
        try:
            status = model_deployment.ensure(body, memo.kube, memo.config)
        except Problem as problem:
            status = model_deployment.failed(body, problem)
            model_deployment.write(memo.kube, body, status)
            metrics.set_phase(c.MODEL_DEPLOYMENT, key, status.phase)
            raise as_kopf_error(problem, memo.config.retry_delay) from None
        model_deployment.write(memo.kube, body, status)
        metrics.set_phase(c.MODEL_DEPLOYMENT, key, status.phase)


@kopf.on.delete(*MD, optional=True)
def model_deployment_deleted(body: kopf.Body, **_: Any) -> None:
    """Its InferenceService goes with it (owner references); only the metrics forget it."""
    metrics.set_phase(c.MODEL_DEPLOYMENT, f"{body.metadata.namespace}/{body.metadata.name}", None)


@kopf.on.event(ISVC_GROUP, ISVC_VERSION, ISVC_PLURAL, labels={c.LABEL_MODEL_DEPLOYMENT: kopf.PRESENT})
def inference_service_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Mirror an InferenceService's status into its ModelDeployment; recreate it if deleted."""
    namespace, owner = body.metadata.namespace, body.metadata.labels[c.LABEL_MODEL_DEPLOYMENT]
    parent = memo.kube.get_model_deployment(namespace, owner)
    if parent is None or parent["metadata"].get("deletionTimestamp"):
        return
    with metrics.reconciling("InferenceService"):
        if event["type"] == "DELETED":
            try:
                status = model_deployment.ensure(parent, memo.kube, memo.config)
            except Problem as problem:
                status = model_deployment.failed(parent, problem)
        else:
            mirrored = model_deployment.mirror(parent, body)
            if mirrored is None:
                return
            status = mirrored
        model_deployment.write(memo.kube, parent, status)
        metrics.set_phase(c.MODEL_DEPLOYMENT, f"{namespace}/{owner}", status.phase)


@kopf.on.resume(*CB)
@kopf.on.create(*CB)
@kopf.on.update(*CB, field="spec")
def classification_batch_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A one-off batch gets its Job; a scheduled one its CronJob."""
    _batch_step(classification_batch.ensure, body, memo)


@kopf.on.update(*CB, field=["metadata", "annotations", c.ANNOTATION_TICK])
def classification_batch_ticked(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """The CronJob ticked: start the next due date's run."""
    _batch_step(classification_batch.tick, body, memo)


@kopf.on.update(*CB, field=["metadata", "annotations", c.ANNOTATION_RERUN_DATE])
def classification_batch_rerun(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Classify one date again and replace its results (`kubeclassify.io/rerun-date`)."""
    _batch_step(classification_batch.rerun, body, memo)


@kopf.on.update(*CB, field=["metadata", "annotations", c.ANNOTATION_ADMISSION])
def classification_batch_admitted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """The gateway admitted (or refused) a gateway user's pending run: it starts (or fails)."""
    _batch_step(classification_batch.admitted, body, memo)


@kopf.timer(*CB, interval=2.0, when=classification_batch.webhook_pending)
def classification_batch_webhooks(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Send the runs' webhooks that are due: one try each, while any is pending."""
    _batch_step(classification_batch.send_webhooks, body, memo)


# Kopf takes a timer's interval when the handler is registered: from the settings, read here.
PROGRESS_SECONDS = OperatorSettings().operator.progress_seconds


@kopf.timer(*CB, interval=PROGRESS_SECONDS, initial_delay=PROGRESS_SECONDS, when=classification_batch.running)
def classification_batch_progress(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """While a run goes: its progress from its pods, every `progressSeconds`."""
    _batch_step(classification_batch.report_progress, body, memo)


@kopf.on.event(
    "batch", "v1", "jobs", labels={c.LABEL_CLASSIFICATION_BATCH: kopf.PRESENT, c.LABEL_COMPONENT: "batch"}
)
def batch_job_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Follow a run's Job into its batch's status; at its end, the Event and the webhook. A Job
    deleted before it finished fails its run (the batch never waits on a Job that is gone)."""
    namespace, owner = body.metadata.namespace, body.metadata.labels[c.LABEL_CLASSIFICATION_BATCH]
    deleted = event["type"] == "DELETED"
    # Kopf does not retry an event handler: a status write refused because another handler wrote
    # the batch meanwhile (409) is done again here, from the batch as it is now.
    for attempt in range(JOB_EVENT_ATTEMPTS):
        parent = memo.kube.get_classification_batch(namespace, owner)
        if parent is None or parent["metadata"].get("deletionTimestamp"):
            return
        with metrics.reconciling("Job"):
            try:
                classification_batch.job_changed(
                    parent, body, memo.kube, memo.config, _now(), deleted=deleted
                )
                return
            except Problem as problem:  # the next run could not start (e.g. its model is gone)
                _record_problem(memo.kube, parent, problem)
                return
            except ApiException as e:
                if e.status != 409 or attempt == JOB_EVENT_ATTEMPTS - 1:
                    raise


JOB_EVENT_ATTEMPTS = 5


@kopf.on.event(
    "batch", "v1", "cronjobs", labels={c.LABEL_CLASSIFICATION_BATCH: kopf.PRESENT, c.LABEL_COMPONENT: "tick"}
)
def tick_cronjob_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A daily batch's CronJob deleted (by hand, or lost) is made again while its batch lives."""
    if event["type"] != "DELETED":
        return
    namespace, owner = body.metadata.namespace, body.metadata.labels[c.LABEL_CLASSIFICATION_BATCH]
    parent = memo.kube.get_classification_batch(namespace, owner)
    if parent is None or parent["metadata"].get("deletionTimestamp"):
        return  # its batch is gone or going: the CronJob goes with it
    with metrics.reconciling("CronJob"):
        classification_batch.apply_tick(parent, memo.kube, memo.config)


def _batch_step(step: Callable[..., None], body: kopf.Body, memo: kopf.Memo) -> None:
    """Run one step for a batch; a problem becomes its status, and Kopf waits or retries. A call
    the API refused is retried after RETRY_DELAY: every step is safe to run again."""
    with metrics.reconciling(c.CLASSIFICATION_BATCH):
        try:
            try:
                step(body, memo.kube, memo.config, _now())
            except Problem as problem:
                _record_problem(memo.kube, body, problem)
                raise as_kopf_error(problem, memo.config.retry_delay) from None
        except ApiException as e:
            if e.status == 409:  # the batch changed meanwhile: again soon, from its latest state
                raise kopf.TemporaryError("the batch changed meanwhile; again", delay=1.0) from e
            message = f"the Kubernetes API answered {e.status} {e.reason}; retrying"
            raise kopf.TemporaryError(message, delay=memo.config.retry_delay) from e


def _record_problem(kube: ClusterApi, body: Mapping[str, Any], problem: Problem) -> None:
    """The problem as the batch's status, written over the batch as it is now (the step may have
    written it since `body` was read)."""
    metadata = body["metadata"]
    latest = kube.get_classification_batch(metadata["namespace"], metadata["name"])
    if latest is not None:
        classification_batch.write(kube, latest, classification_batch.failed(latest, problem))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
