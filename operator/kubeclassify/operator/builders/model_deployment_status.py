"""A ModelDeployment's status, read from its InferenceService's status (pure).

KServe reports readiness as conditions (`Ready`), a load failure in `modelStatus`, the traffic
split per revision (Knative mode: `components.predictor.traffic`) or per canary (Standard mode:
`canaryStatuses`). Versions: `spec.model.version` when given, else the model's URI — the
predictor reports the weights digest with every result, which the operator never reads.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from kubeclassify.core.resources.common import Condition, ConditionStatus, set_condition
from kubeclassify.core.resources.model_deployment import (
    ModelDeploymentPhase,
    ModelDeploymentStatus,
    ModelSpec,
)
from kubeclassify.operator.builders.inference_service import Rollout

# KServe's states that mean the model will not serve until someone changes something.
_FAILED_TRANSITIONS = {"BlockedByFailedLoad", "InvalidSpec"}


def version_of(model: ModelSpec) -> str:
    return model.version or model.uri


def serving_status(
    conditions: list[Condition],
    generation: int | None,
    isvc: dict[str, Any] | None,
    rollout: Rollout,
    now: dt.datetime | None = None,
) -> ModelDeploymentStatus:
    """The status for a ModelDeployment at `generation` whose InferenceService is `isvc`."""
    observed = (isvc or {}).get("status") or {}
    ready = _condition(observed, "Ready")
    failure = _failure(observed)
    canary_percent = _canary_percent(observed) if rollout.canary is not None else None
    phase: ModelDeploymentPhase
    status: ConditionStatus
    if isvc is None or not observed:
        phase, status, reason, message = "Pending", "Unknown", "InferenceServiceCreated", "waiting for KServe"
    elif failure is not None:
        phase, status, reason, message = "Failed", "False", failure[0], failure[1]
    elif ready is not None and ready.get("status") == "True" and _current(isvc):
        phase = "Canary" if rollout.canary is not None else "Ready"
        status, reason, message = "True", "InferenceServiceReady", "the predictor answers"
    else:
        phase, status = "Progressing", "False" if ready else "Unknown"
        reason = _reason(ready) or "InferenceServiceProgressing"
        message = (ready or {}).get("message") or "KServe is rolling out the predictor"
    conditions = set_condition(conditions, "Ready", status, reason, message, generation, now)
    if rollout.canary is not None:
        conditions = set_condition(
            conditions,
            "Canary",
            "True",
            "CanaryServing",
            f"{version_of(rollout.canary)} takes {rollout.canary_percent}% of the traffic",
            generation,
            now,
        )
    else:
        reason, message = (
            ("RolledBack", "the changed model is not served (canary.trafficPercent is 0)")
            if rollout.rolled_back
            else ("Promoted", "one model takes all the traffic")
        )
        conditions = set_condition(conditions, "Canary", "False", reason, message, generation, now)
    return ModelDeploymentStatus(
        phase=phase,
        conditions=conditions,
        observed_generation=generation,
        # KServe's status.url is the external one, under its ingress domain (http://name-ns.example.com
        # on a stock install, not resolvable in the cluster); address.url is the cluster-local one.
        url=(observed.get("address") or {}).get("url") or observed.get("url"),
        external_url=observed.get("url"),
        inference_service=(isvc or {}).get("metadata", {}).get("name"),
        ready_replicas=_ready_copies(observed),
        stable_version=version_of(rollout.stable),
        canary_version=version_of(rollout.canary) if rollout.canary is not None else None,
        canary_traffic_percent=canary_percent
        if canary_percent is not None
        else (rollout.canary_percent if rollout.canary is not None else None),
        last_updated=now or dt.datetime.now(dt.UTC).replace(microsecond=0),
    )


def failed_status(
    conditions: list[Condition],
    generation: int | None,
    reason: str,
    message: str,
    now: dt.datetime | None = None,
) -> ModelDeploymentStatus:
    """The status for a ModelDeployment that cannot be served as it stands (bad spec, missing Secret)."""
    return ModelDeploymentStatus(
        phase="Failed",
        conditions=set_condition(conditions, "Ready", "False", reason, message, generation, now),
        observed_generation=generation,
        last_updated=now or dt.datetime.now(dt.UTC).replace(microsecond=0),
    )


def _condition(observed: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in observed.get("conditions") or [] if c.get("type") == type_), None)


def _reason(cond: dict[str, Any] | None) -> str | None:
    reason = (cond or {}).get("reason")
    return reason if reason and reason.replace("_", "").isalnum() else None


def _current(isvc: dict[str, Any]) -> bool:
    """Whether KServe has seen the latest spec (a Ready from before the last change does not count)."""
    seen = (isvc.get("status") or {}).get("observedGeneration")
    return seen is None or seen >= isvc.get("metadata", {}).get("generation", 0)


def _failure(observed: dict[str, Any]) -> tuple[str, str] | None:
    model = observed.get("modelStatus") or {}
    info = model.get("lastFailureInfo") or {}
    state = (model.get("states") or {}).get("activeModelState")
    if info or state == "FailedToLoad" or model.get("transitionStatus") in _FAILED_TRANSITIONS:
        reason = info.get("reason") or model.get("transitionStatus") or "FailedToLoad"
        return reason, info.get("message") or f"KServe reports {reason}"
    return None


def _canary_percent(observed: dict[str, Any]) -> int | None:
    for canary in observed.get("canaryStatuses") or []:  # Standard mode
        if canary.get("trafficPercent") is not None:
            return int(canary["trafficPercent"])
    traffic = ((observed.get("components") or {}).get("predictor") or {}).get("traffic") or []
    if len(traffic) > 1:  # Knative mode: the latest revision is the canary
        latest = next((t for t in traffic if t.get("latestRevision")), None)
        if latest is not None and latest.get("percent") is not None:
            return int(latest["percent"])
    return None


def _ready_copies(observed: dict[str, Any]) -> int | None:
    copies = (observed.get("modelStatus") or {}).get("copies") or {}
    total = copies.get("totalCopies")
    return max(0, int(total) - int(copies.get("failedCopies") or 0)) if total is not None else None
