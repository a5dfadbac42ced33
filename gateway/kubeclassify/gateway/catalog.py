"""Where the models are: the predictors named in settings (the local stack), or the namespace's
ModelDeployments read through the Kubernetes API (their status carries the predictor's URL)."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import aiohttp

from kubeclassify.core import constants as c
from kubeclassify.core.kubeapi import CustomObjects
from kubeclassify.core.predictor import describe


class Catalog(Protocol):
    async def resolve(self, name: str) -> str | None:
        """The predictor's base URL for model `name`; None when there is no such model."""

    async def describe(self) -> list[dict[str, Any]]:
        """Every model: name, ready, version, labels, description."""

    async def check(self) -> None:
        """Raise when the source cannot be reached (for readiness)."""


class NotReady(Exception):
    """The model exists but does not serve yet."""


async def model_exists(catalog: Catalog, model: str) -> bool:
    """Whether the model exists (it may not serve yet: a batch waits for it)."""
    try:
        return await catalog.resolve(model) is not None
    except NotReady:
        return True


class Predictors:
    """Models from `PREDICTORS`: each predictor describes its own model."""

    def __init__(self, predictors: dict[str, str], http: aiohttp.ClientSession) -> None:
        self.predictors, self.http = predictors, http

    async def resolve(self, name: str) -> str | None:
        return self.predictors.get(name)

    async def describe(self) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(self._one(n, b) for n, b in sorted(self.predictors.items()))))

    async def check(self) -> None:
        return None  # a model outage must not make the gateway unready

    async def _one(self, name: str, base: str) -> dict[str, Any]:
        info: dict[str, Any] = {"name": name, "ready": False}
        body = await describe(self.http, base, name)
        if body is not None:
            info.update(
                ready=True,
                version=body.get("version"),
                labels=body.get("labels"),
                description=body.get("description"),
            )
        return info


class ModelDeployments:
    """Models from the ModelDeployments of one namespace (read-only: `get` and `list` on them)."""

    def __init__(self, api: Any, namespace: str) -> None:
        self.objects = CustomObjects(api, namespace, c.PLURALS[c.MODEL_DEPLOYMENT])

    async def resolve(self, name: str) -> str | None:
        body = await asyncio.to_thread(self.objects.get, name)
        if body is None:
            return None
        status = body.get("status") or {}
        if status.get("phase") not in ("Ready", "Canary") or not status.get("url"):
            raise NotReady(f"model {name!r} is not ready ({status.get('phase') or 'Pending'})")
        return str(status["url"])

    async def describe(self) -> list[dict[str, Any]]:
        items = (await asyncio.to_thread(self.objects.list)).get("items") or []
        return [_info(body) for body in sorted(items, key=lambda b: b["metadata"]["name"])]

    async def check(self) -> None:
        await asyncio.to_thread(self.objects.list, limit=1)


def _info(body: dict[str, Any]) -> dict[str, Any]:
    spec, status = body.get("spec") or {}, body.get("status") or {}
    model = spec.get("model") or {}
    return {
        "name": body["metadata"]["name"],
        "ready": status.get("phase") in ("Ready", "Canary"),
        "version": status.get("stableVersion") or model.get("version"),
        "labels": model.get("labels"),
        "description": model.get("description"),
    }
