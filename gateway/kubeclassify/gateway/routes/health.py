"""Liveness and readiness: ready means Redis, the images bucket and (when models come from it) the
Kubernetes API answer; a predictor is not a dependency of sign-in."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from kubeclassify.core.storage import StorageError
from kubeclassify.gateway.deps import AccountsDep, CatalogDep, ConfigDep, StoreDep, ensure_admin
from kubeclassify.gateway.schemas import Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    """The process is up (for liveness probes)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready."}},
    summary="Redis, the images bucket, and the Kubernetes API when models come from it, answer",
)
async def readyz(
    request: Request, accounts: AccountsDep, store: StoreDep, config: ConfigDep, catalog: CatalogDep
) -> Any:
    """Ready to serve: Redis, the images bucket and, when models come from it, the Kubernetes API
    answer (never a predictor: a model outage must not take sign-in down)."""
    try:
        await accounts.redis.ping()
        await ensure_admin(request.app)
    except RedisError as e:
        return JSONResponse({"status": "unavailable", "redis": type(e).__name__}, status_code=503)
    try:
        await asyncio.to_thread(store.check, config.images_uri)
    except StorageError as e:
        return JSONResponse({"status": "unavailable", "s3": type(e).__name__}, status_code=503)
    try:
        await catalog.check()
    except Exception as e:  # the Kubernetes API, when models come from it: any failure is "not ready"
        return JSONResponse({"status": "unavailable", "models": type(e).__name__}, status_code=503)
    return {"status": "ok", "redis": "ok", "s3": "ok"}
