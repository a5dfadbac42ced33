"""A Kubernetes API emulator for the tests: KMock 0.8's KubernetesEmulator with the fidelity
fixes that Kopf, the official client and kubectl need.

Run as a process: `python tests/harness/kubeapi.py --port P --crd FILE...`. What it adds to KMock
(pinned: this relies on KMock internals):

- server-assigned metadata: resourceVersion (one counter, bumped on every write), uid,
  creationTimestamp, generation (bumped when anything but metadata and status changes), the
  namespace from the URL, names from generateName;
- JSON patches (a failed `test` is 422, as in Kubernetes, not 500), merge patches with a
  resourceVersion precondition (409 on mismatch), and PUT;
- server-side apply (`application/apply-patch+yaml`) as a merge of the applied fields that also
  removes what the same field manager applied before and no longer does, creating the object when
  it does not exist: conflicts between managers and list merge keys are not emulated;
- the status subresource: writes to the object ignore status, writes to /status change only status;
- lists that carry kind, apiVersion and the current resourceVersion; watches that replay the events
  after the requested resourceVersion (the current objects when none is given) and honour
  timeoutSeconds; label selectors
  (=, ==, !=, in, notin, exists, !exists) on lists and watches;
- creates answered 201 Created, as the official client expects;
- deletion: finalizers hold an object with a deletionTimestamp, and deleting an owner deletes
  its dependents (background propagation, as the garbage collector does);
- faults a test asks for: `POST /_faults` with `{"method", "path" (a regex on the URL path),
  "status", "times"}` answers the next `times` matching requests with `status`, unserved
  (`harness.kubeapi_launch.inject_fault`).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import copy
import datetime as dt
import json
import random
import re
import signal
import string
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import jsonpatch
import kmock
import yaml
from aiohttp import web
from kmock._internal import enums, k8s, references, rendering

CORE_RESOURCES: dict[str, dict[str, Any]] = {
    "v1/pods": {"kind": "Pod", "subresources": {"status", "log"}},
    "v1/events": {"kind": "Event"},
    "v1/secrets": {"kind": "Secret"},
    "v1/configmaps": {"kind": "ConfigMap"},
    "v1/serviceaccounts": {"kind": "ServiceAccount"},
    "v1/services": {"kind": "Service", "subresources": {"status"}},
    "batch/v1/jobs": {"kind": "Job", "subresources": {"status"}},
    "batch/v1/cronjobs": {"kind": "CronJob", "subresources": {"status"}},
    "events.k8s.io/v1/events": {"kind": "Event"},
    "rbac.authorization.k8s.io/v1/roles": {"kind": "Role"},
    "rbac.authorization.k8s.io/v1/rolebindings": {"kind": "RoleBinding"},
    # What the platform chart installs (Helm maps every kind before it renders against a server).
    "rbac.authorization.k8s.io/v1/clusterroles": {"kind": "ClusterRole", "namespaced": False},
    "rbac.authorization.k8s.io/v1/clusterrolebindings": {"kind": "ClusterRoleBinding", "namespaced": False},
    "apps/v1/deployments": {"kind": "Deployment", "subresources": {"status"}},
    "apps/v1/statefulsets": {"kind": "StatefulSet", "subresources": {"status"}},
    "networking.k8s.io/v1/networkpolicies": {"kind": "NetworkPolicy"},
    "networking.k8s.io/v1/ingresses": {"kind": "Ingress", "subresources": {"status"}},
    "policy/v1/poddisruptionbudgets": {"kind": "PodDisruptionBudget", "subresources": {"status"}},
    "autoscaling/v2/horizontalpodautoscalers": {
        "kind": "HorizontalPodAutoscaler",
        "subresources": {"status"},
    },
    # Kopf waits until discovery shows these two, even when it watches all namespaces.
    "v1/namespaces": {"kind": "Namespace", "namespaced": False},
    "apiextensions.k8s.io/v1/customresourcedefinitions": {
        "kind": "CustomResourceDefinition",
        "namespaced": False,
    },
}
VERBS = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
_UNCHANGED = object()


def _dropped(before: Any, after: Any) -> dict[str, Any]:
    """A merge patch removing what `before` set and `after` no longer does (apply's ownership, for
    one manager: a field it stops applying goes)."""
    patch: dict[str, Any] = {}
    for key, value in (before or {}).items():
        if key not in after:
            patch[key] = None
        elif isinstance(value, dict) and isinstance(after[key], dict):
            sub = _dropped(value, after[key])
            if sub:
                patch[key] = sub
    return patch


class _Unchanged(Exception):  # noqa: N818 - a write that changes nothing, answered with the object
    def __init__(self, current: dict[str, Any]) -> None:
        self.current = current


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_diff(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return _UNCHANGED if old == new else copy.deepcopy(new)
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = copy.deepcopy(value)
        else:
            sub = merge_diff(old[key], value)
            if sub is not _UNCHANGED:
                patch[key] = sub
    return patch if patch else _UNCHANGED


def merge_apply(old: Any, patch: Any) -> Any:
    """Apply a JSON merge patch (RFC 7386)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(old) if isinstance(old, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_apply(result.get(key), value)
    return result


_SELECTOR_TERM = re.compile(
    r"\s*(?:(?P<key>[^\s!=,()]+)\s*(?P<op>==|!=|=|\s+in\s+|\s+notin\s+)\s*(?P<val>\([^)]*\)|[^,\s]*)"
    r"|(?P<neg>!)?(?P<exists>[^\s!=,()]+))\s*(?:,|$)"
)


def label_selector_matches(selector: str | None, labels: dict[str, str]) -> bool:
    """Whether labels match a Kubernetes label selector string."""
    if not selector:
        return True
    for m in _SELECTOR_TERM.finditer(selector):
        if not m.group(0).strip():
            continue
        if m.group("exists"):
            present = m.group("exists") in labels
            if present == bool(m.group("neg")):
                return False
            continue
        key, op, val = m.group("key"), m.group("op").strip(), m.group("val")
        values = {v.strip() for v in val.strip("()").split(",")} if op in ("in", "notin") else {val}
        has = key in labels and labels[key] in values
        if (op in ("=", "==", "in") and not has) or (op in ("!=", "notin") and has):
            return False
    return True


class KubernetesStatusError(k8s.KubernetesError):
    """An error answered as a Kubernetes Status (KMock's own answers 500 for anything unknown)."""


@attrs.define(kw_only=True)
class KubeApiEmulator(kmock.KubernetesEmulator):
    _revision: int = attrs.field(default=0, init=False)
    _write_lock: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False)
    # Events by resource, as (resourceVersion, event): watches from a resourceVersion replay them.
    _history: dict[Any, list[tuple[int, dict[str, Any]]]] = attrs.field(
        factory=lambda: collections.defaultdict(list), init=False
    )
    # Evolved requests (by id()) and the request each came from, while in flight.
    _origins: dict[int, rendering.Request] = attrs.field(factory=dict, init=False)
    verbose: bool = False
    _faults: list[dict[str, Any]] = attrs.field(factory=list, init=False)
    # Server-side apply: the last body each field manager applied to each object.
    _applied: dict[Any, dict[str, Any]] = attrs.field(factory=dict, init=False)
    # Pods' logs, by (namespace, pod), as a kubelet stand-in posts them (`POST /_logs/<ns>/<pod>`).
    _logs: dict[tuple[str, str], str] = attrs.field(factory=dict, init=False)

    async def _serve_server_version(self, request: rendering.Request) -> rendering.Payload:
        """A current release (KMock says 1.26), so that charts which require a newer one render."""
        return {**await super()._serve_server_version(request), "minor": "35", "gitVersion": "v1.35.0"}

    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        """A group version's resources, as an API server lists them: the core group's version is `v1`,
        not KMock's `/v1` (Helm's resource mapping finds no core kind otherwise)."""
        payload = await super()._serve_version(request)
        if not isinstance(payload, dict):
            return payload
        if str(payload.get("groupVersion", "")).startswith("/"):
            payload = {**payload, "groupVersion": payload["groupVersion"][1:]}
        # Subresources belong to no category (`kubectl get <category>` would list `.../status`).
        resources = [
            {**r, "categories": [], "shortNames": []} if "/" in r.get("name", "") else r
            for r in payload.get("resources", [])
        ]
        return {**payload, "resources": resources}

    # -- registration ---------------------------------------------------------------------------

    def register(
        self,
        key: str,
        kind: str,
        namespaced: bool = True,
        subresources: set[str] | None = None,
        shortnames: list[str] | None = None,
        categories: list[str] | None = None,
    ) -> None:
        self.resources[key] = kmock.ResourceInfo(
            kind=kind,
            singular=kind.lower(),
            namespaced=namespaced,
            verbs=VERBS,
            subresources=subresources or set(),
            shortnames=shortnames or [],
            categories=categories or [],
        )

    def register_crd(self, crd: dict[str, Any]) -> None:
        """Serve the CRD's resource, and the CRD itself as an object."""
        spec = crd["spec"]
        crd = copy.deepcopy(crd)
        crd["metadata"].update(
            uid=str(uuid.uuid4()),
            creationTimestamp=_now(),
            resourceVersion=self._next_revision(),
            generation=1,
        )
        self.objects[
            kmock.resource("apiextensions.k8s.io/v1/customresourcedefinitions"), None, crd["metadata"]["name"]
        ] = crd
        for version in spec["versions"]:
            self.register(
                f"{spec['group']}/{version['name']}/{spec['names']['plural']}",
                kind=spec["names"]["kind"],
                namespaced=spec["scope"] == "Namespaced",
                subresources=set(version.get("subresources", {})),
                shortnames=spec["names"].get("shortNames", []),
                categories=spec["names"].get("categories", []),
            )

    # -- request handling ---------------------------------------------------------------------

    def _evolve(self, request: rendering.Request, **changes: Any) -> rendering.Request:
        # KMock matches reactions by the identity of the logged request: replace it in the log.
        new = attrs.evolve(request, **changes)
        for i in range(len(self._requests) - 1, -1, -1):
            if self._requests[i] is request:
                self._requests[i] = new
                break
        self._origins[id(new)] = self._origins.pop(id(request), request)
        return new

    async def _handle(self, request: rendering.Request) -> Any:
        # KMock logs every request and scans the whole log to route each new one: over a test
        # session that grows quadratic. Only requests in flight stay logged here.
        try:
            return await self._serve(request)
        finally:
            for i in range(len(self._requests) - 1, -1, -1):
                logged = self._requests[i]
                if logged is request or self._origins.get(id(logged)) is request:
                    self._origins.pop(id(logged), None)
                    del self._requests[i]
                    break

    async def _serve(self, request: rendering.Request) -> Any:
        if self.verbose:
            print(request.method, request.url.path_qs, flush=True)
        if (logs := re.fullmatch(r"/_logs/([^/]+)/([^/]+)", request.url.path)) and request.method == "POST":
            key = (logs[1], logs[2])
            self._logs[key] = self._logs.get(key, "") + str(request.data.get("text", ""))
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success"})
        if (logs := re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/log", request.url.path)) and (
            request.method == "GET"
        ):
            return self._serve_log(logs[1], logs[2], request)
        if request.url.path == "/_faults" and request.method == "POST":
            self._faults.append(dict(request.data))
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success"})
        for fault in self._faults:
            if fault["method"] == request.method and re.search(fault["path"], request.url.path):
                fault["times"] -= 1
                if fault["times"] <= 0:
                    self._faults.remove(fault)
                status = int(fault["status"])
                body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": status}
                return web.json_response(
                    {**body, "reason": "InternalError", "message": "a fault asked for"}, status=status
                )
        if request.resource is None:
            return await super()._handle(request)
        if request.method == "GET" and str(request.params.get("watch", "")).lower() in ("true", "1"):
            request = self._evolve(request, action=enums.action.WATCH)
        if request.method == "PUT" and request.name is not None:
            request = self._evolve(request, action=enums.action.UPDATE)
        if request.action not in (enums.action.CREATE, enums.action.UPDATE, enums.action.DELETE):
            return await super()._handle(request)
        async with self._write_lock:
            dependents: list[Any] = []
            if request.action == enums.action.CREATE:
                self._prepare_create(request)
            elif request.action == enums.action.UPDATE and self._applies_to_nothing(request):
                manager = (
                    (request.resource, request.namespace, request.name),
                    request.params.get("fieldManager"),
                )
                self._applied[manager] = copy.deepcopy(request.data)  # as applied, before the server's fields
                request = self._evolve(request, action=enums.action.CREATE)  # apply creates
                self._prepare_create(request)
            elif request.action == enums.action.UPDATE:
                uid = self._current(request)["metadata"]["uid"]
                try:
                    request = self._prepare_update(request)
                except _Unchanged as unchanged:
                    return web.json_response(unchanged.current)
            else:
                request, dependents = self._prepare_delete(request)
            response = await super()._handle(request)
            if response.status < 300:
                self._record(request)
            if request.action == enums.action.CREATE and response.status == 200:
                response.set_status(201)  # as the API server answers a create (the client expects it)
            if request.action == enums.action.UPDATE:
                key = (request.resource, request.namespace, request.name)
                if self.objects[key].deleted:  # its last finalizer went: collect its dependents
                    dependents = self._dependents(uid)
            for key in dependents:
                await self._cascade_delete(key)
            return response

    def _serve_log(self, namespace: str, pod: str, request: rendering.Request) -> web.Response:
        """A pod's log as the kubelet serves it: the last `tailLines` lines, then at most `limitBytes`
        of them from their start (the end may be cut)."""
        key = (kmock.resource("v1/pods"), namespace, pod)
        if key not in self.objects or self.objects[key].deleted:
            body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404}
            message = f"pods {pod!r} not found"
            return web.json_response({**body, "reason": "NotFound", "message": message}, status=404)
        text = self._logs.get((namespace, pod), "")
        if "tailLines" in request.params:
            tail = int(request.params["tailLines"])
            text = "".join(text.splitlines(keepends=True)[-tail:]) if tail > 0 else ""
        data = text.encode()
        if "limitBytes" in request.params:
            data = data[: int(request.params["limitBytes"])]
        return web.Response(body=data, content_type="text/plain")

    def _record(self, request: rendering.Request) -> None:
        """Keep the event a successful write caused, for watches that start from an older version."""
        data = request.data if isinstance(request.data, dict) else {}
        name = request.name or (data.get("metadata") or {}).get("name")
        namespace = request.namespace or (data.get("metadata") or {}).get("namespace")
        key = (request.resource, namespace, name)
        if key not in self.objects:
            return
        obj = self.objects[key]
        if obj.deleted:
            kind, raw = "DELETED", obj.last.raw
        else:
            kind, raw = ("ADDED" if request.action == enums.action.CREATE else "MODIFIED"), obj.raw
        self._remember(request.resource, kind, raw)

    def _remember(self, resource: Any, kind: str, raw: dict[str, Any]) -> None:
        events = self._history[resource]
        events.append((int(raw["metadata"]["resourceVersion"]), {"type": kind, "object": copy.deepcopy(raw)}))
        del events[:-10000]

    def _next_revision(self) -> str:
        self._revision += 1
        return str(self._revision)

    def _KubernetesEmulator__get_obj(self, request: rendering.Request, strict: bool) -> Any:  # noqa: N802
        # KMock scans every object to find one by name; a dict lookup keeps requests O(1).
        if strict and request.name is not None:
            return self._objects._objects.get((request.resource, request.namespace, request.name))
        return super()._KubernetesEmulator__get_obj(request, strict)  # type: ignore[misc]

    def _info(self, request: rendering.Request) -> references.ResourceInfo:
        if request.resource in self.resources:  # declared: no need to scan every object's kind
            return self.resources[request.resource]
        for resource in self._get_resources():
            if resource == request.resource:
                return self.resources[resource]
        raise k8s.KubernetesResourceNotFoundError()

    def _prepare_create(self, request: rendering.Request) -> None:
        self._info(request)
        if not isinstance(request.data, dict):
            raise KubernetesStatusError(400, "BadRequest", "the body must be a JSON object")
        meta = request.data.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
            meta["name"] = meta["generateName"] + suffix
        if not meta.get("name"):
            raise KubernetesStatusError(422, "Invalid", "metadata.name: Required value")
        if request.namespace:
            if meta.get("namespace") not in (None, request.namespace):
                raise KubernetesStatusError(
                    400,
                    "BadRequest",
                    "the namespace of the object does not match the namespace on the request",
                )
            meta["namespace"] = request.namespace
        meta.update(
            uid=str(uuid.uuid4()),
            creationTimestamp=_now(),
            resourceVersion=self._next_revision(),
            generation=1,
        )
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(field, None)

    def _applies_to_nothing(self, request: rendering.Request) -> bool:
        """A server-side apply to an object that does not exist (it creates it)."""
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        key = (request.resource, request.namespace, request.name)
        return content_type == "application/apply-patch+yaml" and (
            key not in self.objects or self.objects[key].deleted
        )

    def _current(self, request: rendering.Request) -> dict[str, Any]:
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            raise k8s.KubernetesObjectNotFoundError()
        return copy.deepcopy(self.objects[key].raw)

    def _prepare_update(self, request: rendering.Request) -> rendering.Request:
        info = self._info(request)
        current = self._current(request)
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        body = request.data
        if content_type == "application/apply-patch+yaml":
            # Server-side apply, taken as a merge of the applied fields: field ownership and
            # conflicts are not emulated (the managers' fields are not tracked).
            if not isinstance(body, dict):
                raise KubernetesStatusError(400, "BadRequest", "the body must be a JSON object")
            key = (request.resource, request.namespace, request.name)
            manager = (key, request.params.get("fieldManager"))
            dropped = _dropped(self._applied.get(manager, {}), body)  # what this manager set last time
            new, precondition = merge_apply(merge_apply(current, dropped), body), None
            self._applied[manager] = copy.deepcopy(body)
        elif request.method == "PUT":
            if not isinstance(body, dict):
                raise KubernetesStatusError(400, "BadRequest", "the body must be a JSON object")
            new = copy.deepcopy(body)
            precondition = body.get("metadata", {}).get("resourceVersion")
        elif content_type == "application/json-patch+json" or isinstance(body, list):
            try:
                new = jsonpatch.apply_patch(current, body, in_place=False)
            except jsonpatch.JsonPatchTestFailed as e:
                raise KubernetesStatusError(422, "Invalid", f"the test operation failed: {e}") from e
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
                raise KubernetesStatusError(422, "Invalid", f"the JSON patch cannot be applied: {e}") from e
            precondition = None
        elif isinstance(body, dict):
            new = merge_apply(current, body)
            precondition = (body.get("metadata") or {}).get("resourceVersion")
        else:
            raise KubernetesStatusError(400, "BadRequest", "the patch must be a JSON object or list")
        if precondition is not None and str(precondition) != current["metadata"]["resourceVersion"]:
            raise KubernetesStatusError(
                409,
                "Conflict",
                "the object has been modified; please apply your changes to the latest version",
            )

        if request.subresource == "status":
            new = (
                dict(current, status=new.get("status"))
                if "status" in new
                else {k: v for k, v in current.items() if k != "status"}
            )
        elif request.subresource is None and "status" in info.subresources:
            new = {k: v for k, v in new.items() if k != "status"}
            if "status" in current:
                new["status"] = current["status"]
        new = copy.deepcopy(new)  # merge_apply and the status split share nested dicts with current
        meta = new.setdefault("metadata", {})
        for field in ("uid", "creationTimestamp", "name", "namespace", "generation", "deletionTimestamp"):
            if field in current["metadata"]:
                meta[field] = current["metadata"][field]
            else:
                meta.pop(field, None)
        if {k: v for k, v in new.items() if k not in ("metadata", "status")} != {
            k: v for k, v in current.items() if k not in ("metadata", "status")
        }:
            meta["generation"] = int(current["metadata"].get("generation", 1)) + 1
        if merge_diff(current, new) is _UNCHANGED:  # as an API server: no new version, no event
            raise _Unchanged(current)
        meta["resourceVersion"] = self._next_revision()
        patch = merge_diff(current, new)
        return self._evolve(request, action=enums.action.UPDATE, data={} if patch is _UNCHANGED else patch)

    def _prepare_delete(self, request: rendering.Request) -> tuple[rendering.Request, list[Any]]:
        self._info(request)
        current = self._current(request)
        meta = current["metadata"]
        if meta.get("finalizers") and not meta.get("deletionTimestamp"):
            patch = {
                "metadata": {
                    "deletionTimestamp": _now(),
                    "deletionGracePeriodSeconds": 0,
                    "resourceVersion": self._next_revision(),
                }
            }
            return self._evolve(request, action=enums.action.UPDATE, data=patch), []
        if meta.get("finalizers"):
            return request, []  # already being deleted; the finalizers decide when
        key = (request.resource, request.namespace, request.name)
        self.objects[key].patch({"metadata": {"resourceVersion": self._next_revision()}})
        return request, self._dependents(meta["uid"])

    def _dependents(self, uid: str) -> list[Any]:
        found = []
        for key, obj in self.objects.items():
            if obj.deleted:
                continue
            refs = obj.raw.get("metadata", {}).get("ownerReferences") or []
            if any(ref.get("uid") == uid for ref in refs):
                found.append(key)
        return found

    async def _cascade_delete(self, key: Any) -> None:
        obj = self.objects[key]
        if obj.deleted:
            return
        meta = obj.raw.get("metadata", {})
        async with self._lock:
            if meta.get("finalizers"):
                obj.patch(
                    {"metadata": {"deletionTimestamp": _now(), "resourceVersion": self._next_revision()}}
                )
                self._remember(key[0], "MODIFIED", obj.raw)
                await self._buses[key[0]].put({"type": "MODIFIED", "object": obj.raw})
                return
            obj.patch({"metadata": {"resourceVersion": self._next_revision()}})
            raw = obj.raw
            obj.delete()
            self._remember(key[0], "DELETED", raw)
            await self._buses[key[0]].put({"type": "DELETED", "object": raw})
        for dependent in self._dependents(meta["uid"]):
            await self._cascade_delete(dependent)

    # -- reading --------------------------------------------------------------------------------

    def _matching(self, request: rendering.Request) -> list[dict[str, Any]]:
        selector = request.params.get("labelSelector")
        out = []
        for (resource, namespace, name), obj in self.objects.items():
            if obj.deleted or resource != request.resource:
                continue
            if request.namespace is not None and namespace != request.namespace:
                continue
            if request.name is not None and name != request.name:
                continue
            raw = obj.raw
            if label_selector_matches(selector, raw.get("metadata", {}).get("labels") or {}):
                out.append(raw)
        return out

    async def _serve_list(self, request: rendering.Request) -> Any:
        info = self._info(request)
        assert request.resource is not None
        group, version = request.resource.group, request.resource.version
        async with self._lock:
            items = self._matching(request)
        return {
            "apiVersion": f"{group}/{version}" if group else version,
            "kind": f"{info.kind}List",
            "metadata": {"resourceVersion": str(self._revision)},
            "items": items,
        }

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[Any]:
        yield b""
        assert request.resource is not None
        since = int(request.params.get("resourceVersion") or 0)
        selector = request.params.get("labelSelector")
        timeout = request.params.get("timeoutSeconds")
        bus = self._buses[request.resource]
        # The write lock first, as writes take it: no write can fall between the history and the bus.
        async with self._write_lock, self._lock:
            mark = await bus.mark()
            if since:  # what happened after that version, as the API server's watch cache replays it
                replay = [e for rv, e in self._history[request.resource] if rv > since]
            else:  # no version: the current objects, as ADDED events
                replay = [{"type": "ADDED", "object": o} for o in self._matching(request)]
        for event in replay:
            meta = event["object"].get("metadata", {})
            if request.namespace is not None and meta.get("namespace") != request.namespace:
                continue
            if request.name is not None and meta.get("name") != request.name:
                continue
            if label_selector_matches(selector, meta.get("labels") or {}):
                yield event
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(float(timeout) if timeout else None):
                async for event in bus.stream(since=mark):
                    obj = event.get("object", {})
                    meta = obj.get("metadata", {})
                    if request.namespace is not None and meta.get("namespace") != request.namespace:
                        continue
                    if request.name is not None and meta.get("name") != request.name:
                        continue
                    if not label_selector_matches(selector, meta.get("labels") or {}):
                        continue
                    if int(meta.get("resourceVersion") or 0) <= since:
                        continue
                    yield event


async def serve(port: int, crds: list[Path], ready_file: Path | None, verbose: bool = False) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with KubeApiEmulator(verbose=verbose) as emulator, kmock.Server(emulator, port=port):
        for key, info in CORE_RESOURCES.items():
            emulator.register(
                key,
                kind=info["kind"],
                namespaced=info.get("namespaced", True),
                subresources=info.get("subresources"),
            )
        for path in crds:
            for doc in yaml.safe_load_all(path.read_text()):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    emulator.register_crd(doc)
        if ready_file is not None:
            ready_file.write_text(json.dumps({"port": port}))
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--crd", type=Path, action="append", default=[], help="a CRD YAML file to serve")
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("--verbose", action="store_true", help="print every request")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.crd, args.ready_file, args.verbose))


if __name__ == "__main__":
    main()
