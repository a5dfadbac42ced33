"""A bare forwarder: about the least any HTTP hop in front of the predictor adds on this machine.

A plain ASGI app under the server the gateway runs under (uvicorn with uvloop and httptools, one
process): a POST's body goes to `$PREDICTOR_URL` + the same path with aiohttp, as the gateway sends
it, and the predictor's answer comes back. No framework, no sign-in, no credits, no storage.
`make bench-gateway` sends the same image through it in the same rounds as the gateway, so what the
gateway's own steps add is the gateway's added latency less this one's.

Run: `PREDICTOR_URL=http://127.0.0.1:8080 python -m uvicorn --app-dir benchmarks/gateway
forwarder:app --port 8001`; a GET answers 204 (ready).
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp

PREDICTOR = os.environ.get("PREDICTOR_URL", "http://127.0.0.1:8080").rstrip("/")
_session: list[aiohttp.ClientSession] = []


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _session.append(aiohttp.ClientSession())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await _session.pop().close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["method"] != "POST":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    headers = {"Content-Type": dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")}
    async with _session[0].post(PREDICTOR + scope["path"], data=body, headers=headers) as resp:
        status, answer = resp.status, await resp.read()
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": answer})
