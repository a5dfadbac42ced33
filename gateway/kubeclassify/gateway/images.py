"""Classified images: records in Redis, originals in object storage.

Keys: `kc:image:<uid>` (hash: owner, label, score, top_k, model_name, model_version, time, uri,
filename, content_type), `kc:images:<owner>` (sorted set of uids by time) and `kc:images` (all),
`kc:categories:<owner>` (hash: label → count)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

# Magic numbers of the formats the predictor decodes; anything else is refused before any work.
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
EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/bmp": ".bmp",
    "image/tiff": ".tif",
    "image/webp": ".webp",
}


def image_type(data: bytes) -> str | None:
    """The image's media type from its first bytes, or None when it is no image we classify."""
    for magic, offset, media_type in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic and (
            media_type != "image/webp" or data[:4] == b"RIFF"
        ):
            return media_type
    return None


@dataclass(frozen=True)
class ImageRecord:
    uid: str
    owner: str
    label: str
    score: float
    top_k: list[dict[str, Any]]
    model_name: str
    model_version: str
    time: float
    uri: str
    filename: str
    content_type: str

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        del out["uri"]  # where it is stored is ours to know
        return out


class Images:
    """The image records of every user, on the same Redis as the accounts."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis

    async def add(self, record: ImageRecord) -> None:
        fields = {**asdict(record), "top_k": json.dumps(record.top_k)}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(f"kc:image:{record.uid}", mapping={k: str(v) for k, v in fields.items()})
            pipe.zadd(f"kc:images:{record.owner}", {record.uid: record.time})
            pipe.zadd("kc:images", {record.uid: record.time})
            pipe.hincrby(f"kc:categories:{record.owner}", record.label, 1)
            await pipe.execute()

    async def get(self, uid: str) -> ImageRecord | None:
        raw = await self.redis.hgetall(f"kc:image:{uid}")
        if not raw:
            return None
        return ImageRecord(
            uid=raw["uid"],
            owner=raw["owner"],
            label=raw["label"],
            score=float(raw["score"]),
            top_k=json.loads(raw["top_k"]),
            model_name=raw["model_name"],
            model_version=raw["model_version"],
            time=float(raw["time"]),
            uri=raw["uri"],
            filename=raw["filename"],
            content_type=raw["content_type"],
        )


def now() -> float:
    return round(time.time(), 3)
