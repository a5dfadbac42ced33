"""A client of the Kubernetes API, found the one way every component finds it, and the one wrapper
over its custom objects."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubeclassify.core.constants import GROUP, VERSION

if TYPE_CHECKING:
    from kubernetes.client import ApiClient


def api_client(kubeconfig: str | None = None) -> ApiClient:
    """The kubeconfig named, else $KUBECONFIG, else the pod's service account (in a cluster), else
    ~/.kube/config: kubectl's order. Raises kubernetes' ConfigException (or OSError) when none works."""
    from kubernetes import client, config

    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    cfg = client.Configuration()
    from_env = os.environ.get("KUBECONFIG")  # read now: kubernetes reads it once, when imported
    if not from_env:
        try:
            config.load_incluster_config(client_configuration=cfg)
            return client.ApiClient(cfg)
        except config.ConfigException:
            pass
    default = str(Path.home() / ".kube" / "config")
    config.load_kube_config(config_file=from_env or default, client_configuration=cfg)
    return client.ApiClient(cfg)


class CustomObjects:
    """The custom objects of one kind in one namespace: the one wrapper over the client's
    CustomObjectsApi, used by the operator, the gateway and the CLI. Blocking, like the client (call it
    off an event loop); every call carries `timeout`. Refusals are the client's ApiException, except a
    missing object, which `get` answers None and `delete` False."""

    def __init__(
        self,
        api: ApiClient,
        namespace: str,
        plural: str,
        group: str = GROUP,
        version: str = VERSION,
        timeout: float | None = 10.0,
    ) -> None:
        from kubernetes import client

        self.api = client.CustomObjectsApi(api)
        self.namespace, self.timeout = namespace, timeout
        self.where = (group, version, namespace, plural)

    def get(self, name: str) -> dict[str, Any] | None:
        return none_if_missing(lambda: self._call("get", name))

    def list(self, **query: Any) -> dict[str, Any]:
        """The list itself: its `items`, and the `metadata.resourceVersion` to watch from."""
        return dict(self._call("list", **query))

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("create", body))

    def patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A merge patch of the object (labels, annotations, spec)."""
        return dict(self._call("patch", name, patch))

    def patch_status(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A merge patch through the status subresource; with `metadata.resourceVersion` in `patch`,
        only if the object is still at that version (409 Conflict otherwise)."""
        status = self.api.patch_namespaced_custom_object_status
        written: Any = status(*self.where, name, patch, **self._timeout())
        return dict(written)

    def apply(self, body: dict[str, Any], field_manager: str) -> dict[str, Any]:
        """Server-side apply `body` as `field_manager`, taking back fields others changed; the stored
        object. Decoded here: an apply that creates is answered 201, which the client leaves undecoded."""
        response: Any = self._call(
            "patch",
            body["metadata"]["name"],
            body,
            field_manager=field_manager,
            force=True,
            _content_type="application/apply-patch+yaml",
            _preload_content=False,
        )
        applied: dict[str, Any] = json.loads(response.data)
        return applied

    def delete(self, name: str) -> bool:
        """Delete the object (its owned children go with it); False when it was not there."""
        return none_if_missing(lambda: self._call("delete", name)) is not None

    def watch(self, **query: Any) -> Generator[dict[str, Any], None, None]:
        """The watch events of `query` (resource_version, label_selector, timeout_seconds...) as the
        client's Watch streams them; the thread blocks between events. Closing the iterator ends the
        watch's connection."""
        from kubernetes import watch

        stream: Generator[dict[str, Any], None, None] = watch.Watch().stream(
            self.api.list_namespaced_custom_object, *self.where, **query
        )
        return stream

    def _call(self, verb: str, *args: Any, **kwargs: Any) -> Any:
        method = getattr(self.api, f"{verb}_namespaced_custom_object")
        return method(*self.where, *args, **self._timeout(), **kwargs)

    def _timeout(self) -> dict[str, Any]:
        return {} if self.timeout is None else {"_request_timeout": self.timeout}


def none_if_missing(call: Callable[[], Any]) -> Any:
    """The call's answer, or None when the API answers 404 Not Found."""
    from kubernetes.client.exceptions import ApiException

    try:
        return call()
    except ApiException as e:
        if e.status == 404:
            return None
        raise
