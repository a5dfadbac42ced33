"""Liveness and readiness: ready means Redis answers (the predictor is not a dependency of sign-in)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from kubeclassify.gateway.deps import ensure_admin

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Redis answers, and the Kubernetes API when models come from it")
async def readyz(request: Request) -> Any:
    try:
        await request.app.state.accounts.redis.ping()
        await ensure_admin(request.app)
    except RedisError as e:
        return JSONResponse({"status": "unavailable", "redis": type(e).__name__}, status_code=503)
    try:
        await request.app.state.catalog.check()
    except Exception as e:  # the Kubernetes API, when models come from it: any failure is "not ready"
        return JSONResponse({"status": "unavailable", "models": type(e).__name__}, status_code=503)
    return {"status": "ok", "redis": "ok"}
