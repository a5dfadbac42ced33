"""What the gateway and the predictor share at the ASGI level."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]  # as Starlette spells it


def limited_receive(receive: Receive, limit: int, too_large: Callable[[], Exception]) -> Receive:
    """`receive`, raising `too_large()` once the body bytes received pass `limit`: a body without a
    Content-Length (a chunked upload) is refused as it arrives, before the rest is read."""
    received = 0

    async def limited() -> Message:
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise too_large()
        return message

    return limited
