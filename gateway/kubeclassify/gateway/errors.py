"""Errors as `application/problem+json` (RFC 9457): a status, a title, and a detail to act on."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """An error (RFC 9457)."""

    type: str = "about:blank"
    title: str = Field(description="The HTTP status phrase.")
    status: int
    detail: str = Field(description="What went wrong, and what to do about it.")
    errors: list[FieldError] | None = Field(None, description="Each invalid field (422 only).")


# What each error status means here: the description each operation documents it with.
MEANINGS = {
    400: "It cannot be done as sent, e.g. an image URL that is not allowed (the detail says why).",
    401: "Not signed in, or the token, API key or password is wrong or has expired.",
    402: "Not enough credits: nothing was done and nothing was taken.",
    403: "Signed in, but this needs an admin.",
    404: "There is no such thing, or it is another user's.",
    409: "Not in the state it is in now (the detail says why and what to do).",
    413: "The body is larger than the limit (the detail names it); the rest was not read.",
    415: "Not an image this service takes: send a JPEG, PNG, GIF, BMP, TIFF or WebP.",
    422: "Invalid input: `errors` names each field and what is wrong with it.",
    429: "Too many requests, or too many failed sign-ins: wait the seconds Retry-After gives.",
    503: "Something it needs (Redis, S3, the model, the Kubernetes API) cannot answer now; try again.",
}
RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for errors answered as problem documents, each with what it means here."""
    schema = {"$ref": "#/components/schemas/Problem"}
    return {
        status: {
            "model": Problem,
            "description": MEANINGS[status],
            "content": {PROBLEM: {"schema": schema}},
            **({"headers": RETRY_AFTER} if status == 429 else {}),
        }
        for status in statuses
    }


# Every operation behind sign-in may answer these (sign-in, validation, the rate limit, Redis away).
SIGNED_IN = problems(401, 422, 429, 503)


def problem(status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def install(app: FastAPI) -> None:
    """Answer every error the app raises as a problem document."""

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(RedisError)
    async def store_error(request: Request, exc: RedisError) -> JSONResponse:
        # Redis away, or full (maxmemory with noeviction refuses writes): a 503 to retry, not a 500
        log.warning("redis error", extra={"error": type(exc).__name__, "route": request.url.path})
        return problem(503, "the accounts store cannot take this now; try again later", {"Retry-After": "5"})

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body") or "body", "message": e["msg"]}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem(422, detail, errors=errors)
