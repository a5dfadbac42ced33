"""How a batch run went, read from its Job and its pods' termination messages, and how far a run
is, read from its pods' logs (pure).

Each shard's pod ends with its summary as the termination message (counts, output URI, or the
error): the operator needs no S3 access for status. Per completion index, the last pod that
succeeded counts; a failed index contributes its last summary, if it wrote one. While a shard
runs, the last progress line of its log (`core.progress`) says how far it is.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from kubeclassify.core.progress import ShardProgress, last_progress
from kubeclassify.core.resources.classification_batch import (
    ENDED_PHASES,
    BatchCounts,
    BatchPhase,
    BatchReason,
)

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
        return self.phase in ENDED_PHASES


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
        outcome.counts.add(BatchCounts.read(summary.get("counts")))
        outcome.output_uri = outcome.output_uri or summary.get("output")
    if "Complete" in conditions:
        outcome.phase = "Succeeded"
    elif "Failed" in conditions:
        failed = conditions["Failed"]
        errors = [s["error"] for s in summaries if s.get("error")]
        exceeded = any(s.get("failed_fraction_exceeded") for s in summaries)
        outcome.phase = "Failed"
        outcome.reason = (
            BatchReason.TOO_MANY_UNREADABLE_IMAGES
            if exceeded
            else failed.get("reason") or BatchReason.JOB_FAILED
        )
        outcome.message = (
            errors[0]
            if errors
            else "more images failed than maxFailedFraction allows"
            if exceeded
            else failed.get("message") or "the Job failed"
        )
        outcome.completion_time = outcome.completion_time or _time(failed.get("lastTransitionTime"))
    return outcome


@dataclass
class RunProgress:
    """How far a running run is, all its shards together."""

    done: int  # images classified or failed
    failed: int
    total: int | None  # None until every shard has counted its input (or finished)
    images_per_second: float  # of the shards still running

    @property
    def remaining_seconds(self) -> float | None:
        if self.total is None or self.images_per_second <= 0:
            return None
        return max(self.total - self.done, 0) / self.images_per_second

    @property
    def text(self) -> str:
        """As `status.progress` shows it: 480/500, or 480/? before the total is known."""
        return f"{self.done}/{'?' if self.total is None else self.total}"


def run_progress(job: dict[str, Any], pods: list[dict[str, Any]], logs: dict[str, str]) -> RunProgress:
    """Per completion index: a succeeded pod's summary, else the last progress line in the log of
    its newest pod that has one (`logs`: a tail of each running pod's log, by pod name)."""
    shards = int((job.get("spec") or {}).get("completions") or 1)
    finished = {
        _index(pod): summary
        for pod in pods
        if (pod.get("status") or {}).get("phase") == "Succeeded" and (summary := _termination_message(pod))
    }
    live: dict[str, tuple[str, ShardProgress]] = {}
    for pod in pods:
        name = pod.get("metadata", {}).get("name", "")
        progress = last_progress(logs[name]) if name in logs else None
        created = pod.get("metadata", {}).get("creationTimestamp") or ""
        if progress is not None and created >= live.get(_index(pod), ("", progress))[0]:
            live[_index(pod)] = (created, progress)
    done = failed = 0
    totals: list[int | None] = []
    rate = 0.0
    for index in (str(i) for i in range(shards)):
        if index in finished:
            counts = BatchCounts.read(finished[index].get("counts"))
            done += counts.classified + counts.failed
            failed += counts.failed
            totals.append(counts.total)
        elif index in live:
            shard = live[index][1]
            done, failed, rate = done + shard.done, failed + shard.failed, rate + shard.images_per_second
            totals.append(None if shard.total is None else max(shard.total, shard.done))
        else:
            totals.append(None)
    total = None if None in totals else sum(t for t in totals if t is not None)
    return RunProgress(done, failed, total, round(rate, 2))


def _index(pod: dict[str, Any]) -> str:
    return str((pod.get("metadata", {}).get("annotations") or {}).get(INDEX_ANNOTATION, "0"))


def _summaries(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary per completion index: the succeeded pod's, else the latest one written."""
    best: dict[str, tuple[int, str, dict[str, Any]]] = {}
    for pod in pods:
        index = _index(pod)
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
