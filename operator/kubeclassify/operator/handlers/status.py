"""Writing a resource's status, and the Events its transitions post."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import kopf
from pydantic import BaseModel

from kubeclassify.core.policy import Denial, describe
from kubeclassify.core.resources.common import Condition


class Problem(Exception):
    """A resource that cannot be reconciled as it stands: a status with a reason, not a crash loop.

    `permanent` problems (a bad spec) wait for the resource to change; the others (a Secret not
    there yet) are retried after a delay."""

    def __init__(self, reason: str, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.reason, self.message, self.permanent = reason, message, permanent


def refuse(denials: list[Denial]) -> None:
    """Stop here when the policy denies what the resource names: Ready False, PolicyDenied, naming
    each field and the rule; it waits for the resource (or, after a restart, the policy) to change."""
    if denials:
        raise Problem("PolicyDenied", describe(denials), permanent=True)


def as_body(obj: Mapping[str, Any]) -> kopf.Body:
    """A resource read from the API, as Kopf's helpers (adopt, event) take it."""
    return kopf.Body(cast(kopf.RawBody, dict(obj)))


def post(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    """One Event about `body`."""
    ref = {k: body[k] for k in ("apiVersion", "kind", "metadata")}
    kopf.event(as_body(ref), type=type_, reason=reason, message=message)


def as_kopf_error(problem: Problem, delay: float) -> kopf.PermanentError | kopf.TemporaryError:
    if problem.permanent:
        return kopf.PermanentError(problem.message)
    return kopf.TemporaryError(problem.message, delay=delay)


def condition(status: Mapping[str, Any] | None, type_: str) -> Condition | None:
    for raw in (status or {}).get("conditions") or []:
        if raw.get("type") == type_:
            return Condition.model_validate(raw)
    return None


def conditions(status: Mapping[str, Any] | None) -> list[Condition]:
    return [Condition.model_validate(raw) for raw in (status or {}).get("conditions") or []]


def status_patch(new: BaseModel, old: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The merge patch from `old` to `new` (None when only `lastUpdated` would change).

    Fields that are gone are sent as null, which a merge patch takes as "remove"."""
    body = new.model_dump(mode="json", by_alias=True)
    before = dict(old or {})
    if {k: v for k, v in body.items() if k != "lastUpdated" and v is not None} == {
        k: v for k, v in before.items() if k != "lastUpdated" and v is not None
    }:
        return None
    return body


def write_status(
    patch_status: Callable[[str, str, dict[str, Any]], None],
    body: Mapping[str, Any],
    status: BaseModel,
    types: tuple[str, ...] | None = None,
) -> None:
    """Patch `body`'s status when it changed, with an Event for each condition that changed
    (of `types`, or all)."""
    old = body.get("status")
    patch = status_patch(status, old)
    if patch is None:
        return
    post_transitions(body, old, status, types)
    patch_status(body["metadata"]["namespace"], body["metadata"]["name"], patch)


def post_transitions(
    body: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    new: BaseModel,
    types: tuple[str, ...] | None = None,
) -> None:
    """An Event for each change of a condition's status or reason (of `types`, or all)."""
    after = new.model_dump(mode="json", by_alias=True)
    ref = {k: body[k] for k in ("apiVersion", "kind", "metadata")}
    for cond in after.get("conditions") or []:
        if types is not None and cond["type"] not in types:
            continue
        before = condition(old, cond["type"])
        if before is not None and (before.status, before.reason) == (cond["status"], cond["reason"]):
            continue
        if before is None and cond["status"] != "True" and cond["type"] != "Ready":
            continue  # a condition that starts out False says nothing new
        warning = (
            cond["type"] == "Ready" and cond["status"] == "False" and after.get("phase") != "Progressing"
        )
        kopf.event(
            as_body(ref),
            type="Warning" if warning else "Normal",
            reason=cond["reason"],
            message=cond["message"],
        )
