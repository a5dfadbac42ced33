"""The client of the predictor's protocol, which the gateway and the batch worker both speak.

One image's encoded bytes are the body of a KServe V1 predict (`POST /v1/models/<name>:predict`,
the image's own Content-Type): no base64 and no JSON per image, and the predictor decodes as
training did. `KubeClassify-Top-K` asks for the top k; `describe` reads the model's card. The
connection pool is an aiohttp session that the caller owns (one per process), and the caller bounds
how many calls run at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from kubeclassify.core.constants import HEADER_TOP_K


class PredictorUnavailable(RuntimeError):
    """The predictor did not answer: unreachable, timed out, no such model, or a 5xx."""


class ImageRefused(ValueError):
    """The predictor answered that it cannot read this image (a 4xx): the image, not the predictor."""


@dataclass(frozen=True)
class Prediction:
    """One image's best labels, best first, and the model that gave them."""

    top_k: list[tuple[str, float]]
    model_name: str
    model_version: str

    @property
    def label(self) -> str:
        return self.top_k[0][0]

    @property
    def score(self) -> float:
        return self.top_k[0][1]


# Magic numbers of the formats the predictor decodes; a client sends each as its own
# Content-Type (KServe takes application/octet-stream for JSON), and refuses anything else before any work.
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"BM", 0, "image/bmp"),
    (b"II*\x00", 0, "image/tiff"),
    (b"MM\x00*", 0, "image/tiff"),
    (b"WEBP", 8, "image/webp"),
)


def image_type(data: bytes) -> str | None:
    """The image's media type from its first bytes, or None when it is no image we classify."""
    for magic, offset, media_type in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic and (
            media_type != "image/webp" or data[:4] == b"RIFF"
        ):
            return media_type
    return None


DESCRIBE_PATH = "/kubeclassify/v1/models/{name}"  # the model's card as the predictor serves it


def predict_url(base: str, name: str) -> str:
    """Where a predictor at `base` serves the model `name` (V1)."""
    return f"{base.rstrip('/')}/v1/models/{name}:predict"


async def describe(
    session: aiohttp.ClientSession, base: str, name: str, *, timeout: float = 5.0
) -> dict[str, Any] | None:
    """What the predictor at `base` says of the model `name` (version, labels, description), or None
    when it does not serve it (yet)."""
    url = base.rstrip("/") + DESCRIBE_PATH.format(name=name)
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            if resp.status != 200:
                return None
            body = await resp.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def read_answer(body: bytes, name: str) -> Prediction:
    """The first prediction of a V1 answer."""
    answer = json.loads(body)
    top = answer["predictions"][0]
    return Prediction(
        top_k=[(str(t["label"]), float(t["score"])) for t in top["top_k"]],
        model_name=str(answer.get("model_name") or name),
        model_version=str(answer.get("model_version") or ""),
    )


async def predict(
    session: aiohttp.ClientSession,
    base: str,
    name: str,
    data: bytes,
    media_type: str,
    *,
    timeout: float,
    top_k: int | None = None,
) -> Prediction:
    """Classify one encoded image with the model `name` of the predictor at `base`."""
    url = predict_url(base, name)
    headers = {"Content-Type": media_type, **({HEADER_TOP_K: str(top_k)} if top_k is not None else {})}
    try:
        async with session.post(
            url, data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as resp:
            status, body = resp.status, await resp.read()
    except (aiohttp.ClientError, TimeoutError) as e:
        raise PredictorUnavailable(f"{url} is unreachable: {type(e).__name__}: {e}") from e
    if 400 <= status < 500 and status != 404:
        raise ImageRefused(body.decode(errors="replace")[:300])
    if status != 200:
        raise PredictorUnavailable(f"{url} answered {status}: {body.decode(errors='replace')[:300]}")
    return read_answer(body, name)
