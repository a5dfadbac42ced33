"""The models one can classify with: each predictor's name, readiness, version, labels, description."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import APIRouter, Request
from pydantic import BaseModel

from kubeclassify.gateway.deps import ConfigDep, CurrentUser

router = APIRouter(prefix="/v1", tags=["models"])


class ModelInfo(BaseModel):
    name: str
    ready: bool
    default: bool
    version: str | None = None
    labels: list[str] | None = None
    description: str | None = None


@router.get("/models", response_model=list[ModelInfo], summary="Models, and whether each answers now")
async def list_models(request: Request, user: CurrentUser, config: ConfigDep) -> Any:
    client: httpx.AsyncClient = request.app.state.http

    async def describe(name: str, base: str) -> dict[str, Any]:
        info: dict[str, Any] = {"name": name, "ready": False, "default": name == config.default_model}
        try:
            resp = await client.get(f"{base.rstrip('/')}/kubeclassify/v1/models/{name}", timeout=5.0)
        except httpx.HTTPError:
            return info
        if resp.status_code == 200:
            body = resp.json()
            info.update(ready=True, version=body.get("version"), labels=body.get("labels"))
            info["description"] = body.get("description")
        return info

    return await asyncio.gather(*(describe(n, b) for n, b in sorted(config.predictors.items())))
