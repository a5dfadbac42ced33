"""One plain ASGI middleware for what every request gets: a request id, a body size limit, metrics.

Plain ASGI rather than `@app.middleware("http")`: each of those wraps the request in a task and a
stream, which costs more than the rest of a cheap authenticated request.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kubeclassify.core.asgi import DRAIN_FACTOR, drain, limited_receive
from kubeclassify.core.logs import request_id
from kubeclassify.gateway import errors, metrics


class PerRequest:
    """Per HTTP request: the `X-Request-ID` (kept from the caller, or made) in logs and in the answer;
    413 for a body over `body_limit` bytes (or the path's own limit): at once when its Content-Length
    says so, else as soon as the bytes received pass it (a chunked upload), before more is read;
    request counts and latency by route template."""

    def __init__(self, app: ASGIApp, body_limit: int, limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.body_limit = body_limit
        self.limits = limits or {}  # other limits for some paths: CSV uploads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope["headers"])
        rid = (headers.get(b"x-request-id", b"").decode("latin-1") or secrets.token_hex(8))[:64]
        token = request_id.set(rid)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode("latin-1"))]
            await send(message)

        limit = self.limits.get(scope["path"], self.body_limit)
        refusal = f"the request body is over {limit} bytes"
        try:
            length = headers.get(b"content-length", b"")
            if length.isdigit() and int(length) > limit:
                if int(length) <= DRAIN_FACTOR * limit:
                    await drain(receive, int(length))
                response: Any = errors.problem(413, refusal)
                await response(scope, receive, send_with_id)
            else:  # FastAPI raises an HTTPException again from body parsing: a 413 problem
                within = limited_receive(receive, limit, lambda: HTTPException(413, refusal))
                await self.app(scope, within, send_with_id)
        finally:
            request_id.reset(token)
            route = getattr(scope.get("route"), "path", "unmatched")  # templates, not raw paths
            metrics.REQUESTS.labels(route, scope["method"], str(status)).inc()
            metrics.LATENCY.labels(route).observe(time.perf_counter() - started)
