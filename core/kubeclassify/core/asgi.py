"""What the gateway and the predictor share at the ASGI level."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]  # as Starlette spells it


# A refused body whose Content-Length is at most this many times the limit is read and dropped
# before the 413 goes out.
DRAIN_FACTOR = 4


async def drain(receive: Receive, most: int) -> None:
    """Read and drop the rest of a body that is being refused, when it is at most `most` bytes more.

    The server closes the connection after a response whose request body was not read; a client
    still sending that body then gets a reset instead of the answer (urllib and requests report a
    broken pipe). Reading a body of a declared, sane size first lets every client read the 413; a
    larger one, or one of unknown size, is not read on, and its client may see the reset."""
    read = 0
    while read <= most:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        read += len(message.get("body", b""))


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
