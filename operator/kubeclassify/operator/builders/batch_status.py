"""How a batch run went, read from its Job and its pods' termination messages (pure).

Each shard's pod ends with its summary as the termination message (counts, output URI, or the
error): the operator needs no S3 access for status. Per completion index, the last pod that
succeeded counts; a failed index contributes its last summary, if it wrote one.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from kubeclassify.core.resources.classification_batch import BatchCounts, BatchPhase

INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


@dataclass
class RunOutcome:
    """A run's phase, counts and times; `reason` and `message` say why it failed."""

    phase: BatchPhase
    counts: BatchCounts = field(default_factory=BatchCounts)
    output_uri: str | None = None
    start_time: dt.datetime | None = None
    completion_time: dt.datetime | None = None
    reason: str = ""
    message: str = ""

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


def job_outcome(job: dict[str, Any], pods: list[dict[str, Any]]) -> RunOutcome:
    """The run's outcome from the Job's status and its pods."""
    status = job.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    outcome = RunOutcome(
        phase="Running",  # from its creation on; the Job controller starts pods as it can
        start_time=_time(status.get("startTime")),
        completion_time=_time(status.get("completionTime")),
    )
    summaries = _summaries(pods)
    for summary in summaries:
        counts = summary.get("counts") or {}
        for key in ("total", "classified", "failed", "skipped"):
            setattr(outcome.counts, key, getattr(outcome.counts, key) + int(counts.get(key) or 0))
        outcome.output_uri = outcome.output_uri or summary.get("output")
    if "Complete" in conditions:
        outcome.phase = "Succeeded"
    elif "Failed" in conditions:
        failed = conditions["Failed"]
        errors = [s["error"] for s in summaries if s.get("error")]
        exceeded = any(s.get("failed_fraction_exceeded") for s in summaries)
        outcome.phase = "Failed"
        outcome.reason = "TooManyUnreadableImages" if exceeded else failed.get("reason") or "JobFailed"
        outcome.message = (
            errors[0]
            if errors
            else "more images failed than maxFailedFraction allows"
            if exceeded
            else failed.get("message") or "the Job failed"
        )
        outcome.completion_time = outcome.completion_time or _time(failed.get("lastTransitionTime"))
    return outcome


def _summaries(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary per completion index: the succeeded pod's, else the latest one written."""
    best: dict[str, tuple[int, str, dict[str, Any]]] = {}
    for pod in pods:
        index = (pod.get("metadata", {}).get("annotations") or {}).get(INDEX_ANNOTATION, "0")
        summary = _termination_message(pod)
        if summary is None:
            continue
        rank = 1 if (pod.get("status") or {}).get("phase") == "Succeeded" else 0
        created = pod.get("metadata", {}).get("creationTimestamp") or ""
        if index not in best or (rank, created) > best[index][:2]:
            best[index] = (rank, created, summary)
    return [entry[2] for _, entry in sorted(best.items())]


def _termination_message(pod: dict[str, Any]) -> dict[str, Any] | None:
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        message = ((container.get("state") or {}).get("terminated") or {}).get("message")
        if message:
            try:
                parsed = json.loads(message)
            except ValueError:
                return {"error": message.strip()[-500:]}
            return parsed if isinstance(parsed, dict) else None
    return None


def _time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
