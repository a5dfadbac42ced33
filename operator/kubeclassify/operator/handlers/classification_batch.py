"""ClassificationBatch: start its runs as Jobs (or tick them from a CronJob), and record how they end."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import kopf
from pydantic import ValidationError

from kubeclassify.core.constants import ANNOTATION_RERUN_DATE, ANNOTATION_TICK
from kubeclassify.core.fetch import FetchPolicy
from kubeclassify.core.policy import Denial, batch_denials, describe, webhook_secret_denial
from kubeclassify.core.progress import duration_text
from kubeclassify.core.resources.classification_batch import (
    CONDITION_READY,
    CONDITION_SUCCEEDED,
    MAX_FAILED_RUNS,
    BatchCounts,
    BatchReason,
    BatchRun,
    ClassificationBatch,
    ClassificationBatchStatus,
    PendingRun,
    WebhookDelivery,
    admission_of,
    needs_admission,
    run_id,
)
from kubeclassify.core.resources.common import parse_resource, set_condition
from kubeclassify.core.resources.model_deployment import ModelDeployment, ModelSpec
from kubeclassify.core.schedule import next_date, upcoming_date
from kubeclassify.core.webhooks import deliver
from kubeclassify.operator import metrics
from kubeclassify.operator.builders.batch import (
    ANNOTATION_DATE,
    ANNOTATION_GENERATION,
    batch_job,
    tick_access,
    tick_cronjob,
)
from kubeclassify.operator.builders.batch_status import RunOutcome, job_outcome, run_progress
from kubeclassify.operator.builders.inference_service import name_for, stable_model
from kubeclassify.operator.config import OperatorConfig
from kubeclassify.operator.handlers.model_deployment import explain
from kubeclassify.operator.handlers.status import (
    Problem,
    as_body,
    post,
    post_transitions,
    refuse,
    status_patch,
)
from kubeclassify.operator.kube import ClusterApi


def parse(body: Mapping[str, Any]) -> ClassificationBatch:
    try:
        return parse_resource(ClassificationBatch, dict(body))
    except ValidationError as e:
        raise Problem(BatchReason.INVALID_SPEC, explain(e), permanent=True) from e


def current_status(body: Mapping[str, Any]) -> ClassificationBatchStatus:
    raw = body.get("status") or {}
    try:
        return ClassificationBatchStatus.model_validate(raw)
    except ValidationError:
        return ClassificationBatchStatus()


def ensure(body: Mapping[str, Any], kube: ClusterApi, config: OperatorConfig, now: dt.datetime) -> None:
    """A one-off batch gets its Job; a scheduled one its CronJob (and the tick's access)."""
    cb = parse(body)
    namespace = body["metadata"]["namespace"]
    refuse(
        batch_denials(config.policy, namespace, cb.spec, body["metadata"].get("labels"))
        + _webhook_denials(cb, kube, namespace)
    )
    generation = body["metadata"].get("generation")
    status = current_status(body)
    if _run_lost(body, status, kube, config, now):
        return  # recorded as failed; the next event (or tick) goes on from there
    body = resume(body, status, kube, config, now)  # a run recorded before the operator stopped
    if cb.spec.schedule is not None:
        apply_tick(body, kube, config)
        going = status.phase in ("Running", "AwaitingAdmission")  # a run's own state, kept
        status.phase = status.phase if going else "Suspended" if cb.spec.schedule.suspend else "Scheduled"
        status.next_date = upcoming_date(cb.spec.schedule, status.last_processed_date, now)
        reason, message = (
            BatchReason.SCHEDULED,
            f"ticks on '{cb.spec.schedule.cron}' ({cb.spec.schedule.time_zone})",
        )
    else:
        if status.job_name is None and not status.recent_runs:
            body = begin_run(body, cb, status, kube, config, cb.spec.date, now)
        if status.job_name is None:
            reason, message = BatchReason.AWAITING_ADMISSION, "its run waits for the gateway to admit it"
        else:
            reason, message = BatchReason.JOB_CREATED, f"Job {status.job_name}"
    status.conditions = set_condition(status.conditions, CONDITION_READY, "True", reason, message, generation)
    status.observed_generation = generation
    body = write(kube, body, status)
    ticked = (body["metadata"].get("annotations") or {}).get(ANNOTATION_TICK)
    if cb.spec.schedule is not None and ticked and ticked != status.last_tick:
        tick(body, kube, config, now)  # a tick that came while this step ran, not taken yet


def apply_tick(body: Mapping[str, Any], kube: ClusterApi, config: OperatorConfig) -> None:
    """A scheduled batch's CronJob and the tick's access, as its spec says (server-side apply: made
    again when deleted, left alone when unchanged); nothing for a one-off batch."""
    cb = parse(body)
    if cb.spec.schedule is None:
        return
    for obj in [*tick_access(cb), tick_cronjob(cb, config)]:
        kopf.adopt(obj, owner=as_body(body))
        kube.apply(body["metadata"]["namespace"], obj)


def start_run(
    body: Mapping[str, Any],
    cb: ClassificationBatch,
    kube: ClusterApi,
    config: OperatorConfig,
    date: dt.date | None,
    now: dt.datetime,
    run: PendingRun,
    max_images: int | None = None,
) -> dict[str, Any]:
    """Create the run's Job with the ModelDeployment's stable model; an Event says so."""
    namespace = body["metadata"]["namespace"]
    md, model, url = _model(cb, kube, namespace)
    refuse(batch_denials(config.policy, namespace, cb.spec, body["metadata"].get("labels"), md.spec))
    job = batch_job(
        cb, md, model, config, date, now.replace(microsecond=0), url, run.suffix, bool(run.rerun), max_images
    )
    kopf.adopt(job, owner=as_body(body))
    created, made = kube.create_job(namespace, job)
    if made:  # once, however often the step runs
        what = f"Job {job['metadata']['name']}" + (f" for {date}" if date else "")
        post(body, "Normal", BatchReason.JOB_CREATED, what + (", replacing its results" if run.rerun else ""))
    return created


def begin_run(
    body: Mapping[str, Any],
    cb: ClassificationBatch,
    status: ClassificationBatchStatus,
    kube: ClusterApi,
    config: OperatorConfig,
    date: dt.date | None,
    now: dt.datetime,
    suffix: str | None = None,
    rerun: bool = False,
) -> Mapping[str, Any]:
    """Start a run: record it first (its id is its Job's name, so a handler run again finds that
    Job), then make its Job once it may start: at once for a batch applied with kubectl; for a
    gateway user's batch once the gateway has admitted this run id (its credits reserved), waiting
    as AwaitingAdmission until then. A run the gateway refused ends as failed (AdmissionRefused).
    `status` is written in every case (the batch as written is returned); a rerun's annotation is
    removed once its Job exists."""
    metadata = body["metadata"]
    run = PendingRun(id=run_id(metadata["name"], date, suffix), date=date, suffix=suffix, rerun=rerun or None)
    if status.pending_run != run:
        status.pending_run = run
        body = write(kube, body, status)  # intent before the side effect
    admission = admission_of(metadata) if needs_admission(metadata) else None
    if needs_admission(metadata) and (admission is None or admission.run != run.id):
        if status.phase != "AwaitingAdmission":
            post(
                body,
                "Normal",
                BatchReason.AWAITING_ADMISSION,
                f"run {run.id} waits for the gateway to admit it",
            )
        status.phase = "AwaitingAdmission"
        return write(kube, body, status)
    if admission is not None and admission.refused is not None:
        status.pending_run = None
        refused = RunOutcome(
            phase="Failed",
            reason=BatchReason.ADMISSION_REFUSED,
            message=f"the gateway refused it: {admission.refused}",
        )
        annotations = {ANNOTATION_DATE: date.isoformat()} if date else {}
        status.completion_time = now.replace(microsecond=0)
        _record_run(
            body,
            cb,
            status,
            refused,
            {"metadata": {"name": run.id, "annotations": annotations}},
            date,
            config,
            now,
        )
        body = write(kube, body, status)
        if rerun:
            kube.annotate_classification_batch(
                metadata["namespace"], metadata["name"], {ANNOTATION_RERUN_DATE: None}
            )
        return body
    job = start_run(body, cb, kube, config, date, now, run, admission.images if admission else None)
    next_date_before = status.next_date
    status = _started(status, job, date)
    if rerun and cb.spec.schedule is not None:  # a rerun leaves the schedule's next date alone
        status.next_date = next_date_before
    status.pending_run = None
    body = write(kube, body, status)
    if rerun:
        kube.annotate_classification_batch(
            metadata["namespace"], metadata["name"], {ANNOTATION_RERUN_DATE: None}
        )
    return body


def resume(
    body: Mapping[str, Any],
    status: ClassificationBatchStatus,
    kube: ClusterApi,
    config: OperatorConfig,
    now: dt.datetime,
) -> Mapping[str, Any]:
    """Go on with the run recorded in status.pendingRun, if any and no run goes: one recorded just
    before the operator stopped, or one the gateway has now answered. The batch as written."""
    run = status.pending_run
    if run is None or status.phase == "Running":
        return body
    return begin_run(body, parse(body), status, kube, config, run.date, now, run.suffix, bool(run.rerun))


def admitted(body: Mapping[str, Any], kube: ClusterApi, config: OperatorConfig, now: dt.datetime) -> None:
    """The gateway answered: the pending run starts (or ends as refused)."""
    status = current_status(body)
    if status.phase == "AwaitingAdmission":
        resume(body, status, kube, config, now)


def rerun(body: Mapping[str, Any], kube: ClusterApi, config: OperatorConfig, now: dt.datetime) -> None:
    """Classify one date again, replacing its results, as the rerun annotation asks; the annotation
    is removed once its run has started, so setting it again (even to the same date) asks again.

    The request is recorded in status before its Job is made, and the Job is named by it
    (`-r<N>`): a retry after any failure finds that Job and makes no second one."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    raw = (body["metadata"].get("annotations") or {}).get(ANNOTATION_RERUN_DATE)
    status = current_status(body)
    if not raw:
        if status.rerun_request:  # the annotation taken is gone: the next one is a new request
            status.rerun_request = None
            write(kube, body, status)
        return
    cb = parse(body)
    try:
        date = dt.date.fromisoformat(raw)
    except ValueError:
        post(
            body,
            "Warning",
            BatchReason.INVALID_RERUN_DATE,
            f"{ANNOTATION_RERUN_DATE}: {raw!r} is not YYYY-MM-DD",
        )
        return
    if cb.spec.schedule is None and cb.spec.date != date:
        post(
            body,
            "Warning",
            BatchReason.INVALID_RERUN_DATE,
            f"{ANNOTATION_RERUN_DATE}: this batch processes {cb.spec.date}",
        )
        return
    taken = status.rerun_request == raw
    if taken and status.job_name == run_id(name, date, f"r{status.reruns}"):
        kube.annotate_classification_batch(namespace, name, {ANNOTATION_RERUN_DATE: None})
        return  # started before; only the annotation was left to remove
    if status.phase == "Running":
        raise kopf.TemporaryError("a run is in progress; the rerun starts after it", delay=config.retry_delay)
    if not taken:  # intent before the side effect
        status.reruns, status.rerun_request = (status.reruns or 0) + 1, raw
        body = write(kube, body, status)
    begin_run(body, cb, status, kube, config, date, now, suffix=f"r{status.reruns}", rerun=True)


def tick(body: Mapping[str, Any], kube: ClusterApi, config: OperatorConfig, now: dt.datetime) -> None:
    """On a tick: start the run for the next due date, unless a run is in progress or none is due.
    The tick taken is recorded in status.lastTick (so `ensure` takes one that came while another
    step of the batch ran)."""
    cb = parse(body)
    if cb.spec.schedule is None:
        return
    status = current_status(body)
    ticked = (body["metadata"].get("annotations") or {}).get(ANNOTATION_TICK)
    if ticked is not None and ticked == status.last_tick:
        return  # taken already (by `ensure`, or by this step before a retry)
    status.last_tick = ticked
    if status.phase == "Running" and status.job_name:
        job = kube.get_job(body["metadata"]["namespace"], status.job_name)
        if job is not None and not job_outcome(job, []).finished:
            return  # the run in progress starts the next one when it ends
    upcoming = _next_run(body, cb, status, now)
    if upcoming is None:
        write(kube, body, status)
        return
    begin_run(body, cb, status, kube, config, upcoming.date, now, upcoming.suffix)


def _next_run(
    body: Mapping[str, Any], cb: ClassificationBatch, status: ClassificationBatchStatus, now: dt.datetime
) -> PendingRun | None:
    """The scheduled batch's next run, if a date is due and has tries left (a date that failed
    MAX_FAILED_RUNS times in a row says so in Ready=False, RetriesExhausted, and waits); `status`
    gets the next date and the Ready condition either way."""
    schedule = cb.spec.schedule
    assert schedule is not None
    due = next_date(schedule, status.last_processed_date, now)
    if due is None:
        status.next_date = upcoming_date(schedule, status.last_processed_date, now)
        return None
    generation = body["metadata"].get("generation")
    before, failed = _runs_of(status, due, generation)
    if failed >= MAX_FAILED_RUNS:
        message = (
            f"{due} failed {failed} times in a row; set the annotation {ANNOTATION_RERUN_DATE}: {due}"
            " to run it again, or edit the batch (suspend and resume it) for three more tries"
        )
        if _condition_reason(status, CONDITION_READY) != BatchReason.RETRIES_EXHAUSTED:
            post(body, "Warning", BatchReason.RETRIES_EXHAUSTED, message)
        status.next_date = due
        status.conditions = set_condition(
            status.conditions, CONDITION_READY, "False", BatchReason.RETRIES_EXHAUSTED, message, generation
        )
        return None
    if _condition_reason(status, CONDITION_READY) == BatchReason.RETRIES_EXHAUSTED:
        status.conditions = set_condition(
            status.conditions, CONDITION_READY, "True", BatchReason.SCHEDULED, f"runs {due}", generation
        )
    suffix = f"t{before + 1}" if before else None
    return PendingRun(id=run_id(body["metadata"]["name"], due, suffix), date=due, suffix=suffix)


def _runs_of(status: ClassificationBatchStatus, date: dt.date, generation: int | None) -> tuple[int, int]:
    """The date's latest runs that did not succeed, in a row: how many there are (each later run
    gets a new id), and how many of them failed with a Job made from the current generation (the
    tries counted against MAX_FAILED_RUNS)."""
    before = failed = 0
    for run in reversed(status.recent_runs):
        if run.date != date or run.phase == "Succeeded":
            break
        before += 1
        if run.reason != BatchReason.ADMISSION_REFUSED and (
            run.generation is None or run.generation == generation
        ):
            failed += 1
    return before, failed


def _condition_reason(status: ClassificationBatchStatus, type_: str) -> str | None:
    return next((x.reason for x in status.conditions if x.type == type_), None)


def _run_lost(
    body: Mapping[str, Any],
    status: ClassificationBatchStatus,
    kube: ClusterApi,
    config: OperatorConfig,
    now: dt.datetime,
) -> bool:
    """Whether the run in progress has lost its Job (deleted while the operator was away): if so,
    the run is recorded as failed, as when the deletion is seen (`job_changed`)."""
    if status.phase not in ("Pending", "Running") or not status.job_name:
        return False
    if kube.get_job(body["metadata"]["namespace"], status.job_name) is not None:
        return False
    date = status.next_date if parse(body).spec.schedule is not None else None  # the run's, when dated
    annotations = {ANNOTATION_DATE: date.isoformat()} if date else {}
    job = {"metadata": {"name": status.job_name, "annotations": annotations}, "status": {}}
    job_changed(body, job, kube, config, now, deleted=True)
    return True


def job_changed(
    body: Mapping[str, Any],
    job: Mapping[str, Any],
    kube: ClusterApi,
    config: OperatorConfig,
    now: dt.datetime,
    deleted: bool = False,
) -> None:
    """Follow the current run's Job: Running, then its end (status, Event, webhook, next run). A Job
    deleted before it finished ends its run as failed (`JobDeleted`); a Job removed after its end
    (its TTL) changes nothing."""
    status = current_status(body)
    name = job["metadata"]["name"]
    if status.job_name != name or status.phase not in ("Pending", "Running"):
        resume(body, status, kube, config, now)  # the next run, if one was recorded and not started
        return  # an earlier run's Job, or this run is already recorded
    cb = parse(body)
    outcome = job_outcome(dict(job), kube.job_pods(body["metadata"]["namespace"], name))
    if deleted and not outcome.finished:
        outcome.phase, outcome.reason = "Failed", BatchReason.JOB_DELETED
        outcome.message = (
            f"its Job {name} was deleted before it finished; set the annotation {ANNOTATION_RERUN_DATE}"
            " to run it again"
            if cb.spec.schedule is None
            else f"its Job {name} was deleted before it finished; the date runs again"
        )
    namespace, batch = body["metadata"]["namespace"], body["metadata"]["name"]
    status.start_time = outcome.start_time or status.start_time
    if not outcome.finished:  # how far it is comes from its pods, on the progress timer
        status.phase = outcome.phase
        write(kube, body, status)
        return
    done = outcome.counts.classified + outcome.counts.failed
    status.counts, status.output_uri = outcome.counts, outcome.output_uri or status.output_uri
    status.progress = f"{done}/{outcome.counts.total}"
    status.images_per_second = status.remaining = status.estimated_completion_time = None
    metrics.batch_finished(namespace, batch, outcome.phase, outcome.counts.classified, outcome.counts.failed)
    date = _date_of(job)
    status.completion_time = outcome.completion_time or now.replace(microsecond=0)
    _record_run(body, cb, status, outcome, job, date, config, now)
    if cb.spec.webhook is not None:  # sent by `send_webhooks`, on Kopf's timer, never from here
        status.webhook = status.recent_runs[-1].webhook = WebhookDelivery(
            time=now.replace(microsecond=0),
            attempts=0,
            delivered=False,
            pending=True,
            delivery=f"{namespace}.{name}",
        )
    schedule = cb.spec.schedule
    upcoming = _next_run(body, cb, status, now) if schedule is not None and not schedule.suspend else None
    status.pending_run = upcoming  # recorded with this run's end: an operator that stops here starts it
    body = write(kube, body, status)  # when it comes back (`ensure`)
    if upcoming is not None:
        begin_run(body, cb, status, kube, config, upcoming.date, now, upcoming.suffix)


def _record_run(
    body: Mapping[str, Any],
    cb: ClassificationBatch,
    status: ClassificationBatchStatus,
    outcome: RunOutcome,
    job: Mapping[str, Any],
    date: dt.date | None,
    config: OperatorConfig,
    now: dt.datetime,
) -> None:
    generation = body["metadata"].get("generation")
    if outcome.phase == "Succeeded":
        empty = outcome.counts.total == 0
        reason = BatchReason.NO_IMAGES if empty else BatchReason.SUCCEEDED
        message = f"{date or 'the batch'}: " + (
            "no images; nothing to classify"
            if empty
            else f"{outcome.counts.classified} classified, {outcome.counts.failed} failed"
            f" of {outcome.counts.total}; results at {outcome.output_uri}"
        )
        if outcome.counts.unadmitted:
            message += (
                f"; {outcome.counts.unadmitted} more images were listed by the time it ran, past the"
                f" {outcome.counts.total} it was admitted for: run the date again to classify them"
            )
        post(body, "Normal", reason, message)
        status.conditions = set_condition(
            status.conditions, CONDITION_SUCCEEDED, "True", reason, message, generation
        )
    else:
        message = f"{date or 'the batch'}: {outcome.message}"
        post(body, "Warning", outcome.reason, message)
        status.conditions = set_condition(
            status.conditions, CONDITION_SUCCEEDED, "False", outcome.reason, message, generation
        )
    raw_generation = (job.get("metadata", {}).get("annotations") or {}).get(ANNOTATION_GENERATION)
    latest = next(x for x in status.conditions if x.type == CONDITION_SUCCEEDED)
    run = BatchRun(
        reason=latest.reason,
        message=latest.message,
        date=date,
        phase=outcome.phase,
        job_name=job["metadata"]["name"],
        counts=outcome.counts,
        output_uri=outcome.output_uri,
        start_time=outcome.start_time,
        completion_time=status.completion_time,
        generation=int(raw_generation) if raw_generation else None,
    )
    status.recent_runs = [*status.recent_runs, run][-config.recent_runs :]
    schedule = cb.spec.schedule
    if schedule is None:
        status.phase = outcome.phase
        return
    if outcome.phase == "Succeeded" and date is not None:
        status.last_processed_date = max(date, status.last_processed_date or date)
    status.phase = "Suspended" if schedule.suspend else "Scheduled"
    status.next_date = upcoming_date(schedule, status.last_processed_date, now)


PROGRESS_LOG_LINES = 50  # of each running pod's log: its last progress line is among them
PROGRESS_LOG_BYTES = 32 * 1024


def running(status: Mapping[str, Any] | None, **_: Any) -> bool:
    """Whether a run is going (Kopf's `when` for the progress timer)."""
    return (status or {}).get("phase") == "Running" and bool((status or {}).get("jobName"))


def report_progress(
    body: Mapping[str, Any], kube: ClusterApi, config: OperatorConfig, now: dt.datetime
) -> None:
    """While a run goes: how far it is, its speed and the time it still needs, from its pods (the
    summaries of finished shards, the last progress line in each running pod's log). The write is
    guarded by the batch's resourceVersion: it never overwrites what another handler wrote since
    (the run's end); a conflict waits for the next tick."""
    status = current_status(body)
    if status.phase != "Running" or not status.job_name:
        return
    namespace, batch = body["metadata"]["namespace"], body["metadata"]["name"]
    job = kube.get_job(namespace, status.job_name)
    if job is None or job_outcome(job, []).finished:
        return  # the Job's own events record its end
    if not (job.get("status") or {}).get("active") and status.progress is None:
        return  # no pod has started yet: nothing to read
    pods = kube.job_pods(namespace, status.job_name)
    logs = {
        pod["metadata"]["name"]: kube.pod_log_tail(
            namespace, pod["metadata"]["name"], PROGRESS_LOG_LINES, PROGRESS_LOG_BYTES
        )
        for pod in pods
        if (pod.get("status") or {}).get("phase") == "Running"
    }
    progress = run_progress(job, pods, logs)
    status.progress = progress.text
    status.counts = BatchCounts(
        total=progress.total or 0, classified=progress.done - progress.failed, failed=progress.failed
    )
    status.images_per_second = progress.images_per_second
    left = progress.remaining_seconds
    status.remaining = duration_text(left) if left is not None else None
    status.estimated_completion_time = (
        (now + dt.timedelta(seconds=left)).replace(microsecond=0) if left is not None else None
    )
    metrics.batch_progress(namespace, batch, progress.done, progress.total or 0)
    write(kube, body, status)


WEBHOOK_ATTEMPTS = 5
WEBHOOK_BACKOFF_SECONDS = 2.0  # doubled after each failed try


def webhook_pending(status: Mapping[str, Any] | None, **_: Any) -> bool:
    """Whether a run's webhook is still to be tried (Kopf's `when` for the webhook timer)."""
    return any(((run.get("webhook") or {}).get("pending")) for run in (status or {}).get("recentRuns") or [])


def send_webhooks(
    body: Mapping[str, Any], kube: ClusterApi, config: OperatorConfig, now: dt.datetime
) -> None:
    """Try each run's webhook that is due, once: on the timer Kopf runs while one is pending, never
    in a Job's handler, so a slow receiver holds up no other batch's bookkeeping. A network error,
    429 or 5xx is tried again WEBHOOK_ATTEMPTS times in all, after a backoff that doubles; every try
    carries the same delivery id. The outcome is recorded on the run (and as `status.webhook`)."""
    cb = parse(body)
    hook = cb.spec.webhook
    status = current_status(body)
    namespace = body["metadata"]["namespace"]
    for run in status.recent_runs:
        sent = run.webhook
        if sent is None or not sent.pending:
            continue
        wait = WEBHOOK_BACKOFF_SECONDS * 2 ** (sent.attempts - 1) if sent.attempts else 0.0
        if now < sent.time + dt.timedelta(seconds=wait):
            continue
        refused = _webhook_denials(cb, kube, namespace) if hook else []
        if hook is None or refused:  # the webhook went from the spec, or its Secret lost its label
            error = describe(refused) if refused else "spec.webhook was removed"
            run.webhook = sent.model_copy(update={"pending": False, "error": error, "time": now})
        else:
            secret = (
                kube.secret_value(namespace, hook.secret_name, hook.secret_key) if hook.secret_name else None
            )
            policy = FetchPolicy.allowing(*config.webhook_allowed_networks, timeout=10.0, max_bytes=64 * 1024)
            payload = _payload(body, run)
            result = deliver(
                str(hook.url), payload, secret, policy=policy, attempts=1, delivery=sent.delivery
            )
            attempts = sent.attempts + 1
            run.webhook = WebhookDelivery(
                time=result.time,
                attempts=attempts,
                status_code=result.status_code,
                delivered=result.delivered,
                error=result.error,
                pending=not result.delivered and result.retryable and attempts < WEBHOOK_ATTEMPTS,
                delivery=sent.delivery,
            )
        if not run.webhook.delivered and not run.webhook.pending:
            post(
                body,
                "Warning",
                BatchReason.WEBHOOK_FAILED,
                f"{hook.url if hook else 'webhook'}: {run.webhook.error}",
            )
        status.webhook = run.webhook
    write(kube, body, status)


def _payload(body: Mapping[str, Any], run: BatchRun) -> dict[str, Any]:
    """What a run's webhook says: the same on every try."""
    return {
        "batch": body["metadata"]["name"],
        "namespace": body["metadata"]["namespace"],
        "date": run.date.isoformat() if run.date else None,
        "phase": run.phase,
        "counts": run.counts.model_dump(mode="json"),
        "output_uri": run.output_uri,
        "job": run.job_name,
        "reason": run.reason if run.phase == "Failed" else None,
        "message": run.message if run.phase == "Failed" else None,
    }


def _webhook_denials(cb: ClassificationBatch, kube: ClusterApi, namespace: str) -> list[Denial]:
    hook = cb.spec.webhook
    if hook is None or not hook.secret_name:
        return []
    denial = webhook_secret_denial(hook.secret_name, kube.secret_labels(namespace, hook.secret_name))
    return [denial] if denial else []


def _model(
    cb: ClassificationBatch, kube: ClusterApi, namespace: str
) -> tuple[ModelDeployment, ModelSpec, str | None]:
    """The ModelDeployment, its stable model (batches never use a canary) and, for mode remote, its URL."""
    ref = cb.spec.model_ref.name
    raw = kube.get_model_deployment(namespace, ref)
    if raw is None:
        raise Problem(
            BatchReason.MODEL_DEPLOYMENT_NOT_FOUND, f"spec.modelRef: ModelDeployment {ref!r} does not exist"
        )
    try:
        md = parse_resource(ModelDeployment, raw)
    except ValidationError as e:
        raise Problem(
            BatchReason.MODEL_DEPLOYMENT_INVALID, f"ModelDeployment {ref!r} is invalid: {explain(e)}"
        ) from e
    model = stable_model(kube.get_inference_service(namespace, name_for(ref))) or md.spec.model
    url = None
    if cb.spec.mode == "remote":
        status = md.status
        if status is None or status.phase not in ("Ready", "Canary") or not status.url:
            raise Problem(
                BatchReason.MODEL_DEPLOYMENT_NOT_READY,
                f"mode remote needs ModelDeployment {ref!r} to be Ready",
            )
        url = status.url
    return md, model, url


def _started(
    status: ClassificationBatchStatus, job: Mapping[str, Any], date: dt.date | None
) -> ClassificationBatchStatus:
    status.phase = "Running"
    status.job_name = job["metadata"]["name"]
    status.counts, status.progress, status.output_uri = None, None, None
    status.images_per_second = status.remaining = status.estimated_completion_time = None
    status.start_time, status.completion_time, status.webhook = None, None, None
    if date is not None:
        status.next_date = date
    return status


def _date_of(job: Mapping[str, Any]) -> dt.date | None:
    raw = (job["metadata"].get("annotations") or {}).get(ANNOTATION_DATE)
    return dt.date.fromisoformat(raw) if raw else None


def failed(body: Mapping[str, Any], problem: Problem) -> ClassificationBatchStatus:
    status = current_status(body)
    generation = body["metadata"].get("generation")
    status.conditions = set_condition(
        status.conditions, CONDITION_READY, "False", problem.reason, problem.message, generation
    )
    status.observed_generation = generation
    if problem.permanent or status.phase is None:
        status.phase = "Failed" if problem.permanent else "Pending"
    return status


def write(kube: ClusterApi, body: Mapping[str, Any], status: ClassificationBatchStatus) -> Mapping[str, Any]:
    """Patch the status when it changed, only if the batch is still the version `body` is: a handler
    that read it before another wrote it gets 409 and runs again from the batch as it is, so no
    write is ever lost under another (handlers of the batch, of its Jobs and its timers run side by
    side). A Ready condition that changes posts an Event (runs post their own). The batch as
    written: a step that writes again passes it on."""
    old = body.get("status")
    patch = status_patch(status, old)
    if patch is None:
        return body
    post_transitions(body, old, status, (CONDITION_READY,))
    metadata = body["metadata"]
    written = kube.patch_classification_batch_status(
        metadata["namespace"], metadata["name"], patch, metadata.get("resourceVersion")
    )
    version = (written.get("metadata") or {}).get("resourceVersion")
    return {**body, "metadata": {**metadata, "resourceVersion": version}, "status": written.get("status")}
