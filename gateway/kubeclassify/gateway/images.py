"""Classified images: records in Redis, originals in object storage.

Keys: `kc:image:<uid>` (hash: owner, label, score, top_k, model_name, model_version, time, uri,
filename, content_type); sorted sets of uids by time, `kc:images:<owner>` and `kc:images` (all), each
also per label (`...:label:<label>`), so every page is a range read; `kc:categories:<owner>` (hash:
label → count)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/bmp": ".bmp",
    "image/tiff": ".tif",
    "image/webp": ".webp",
}


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
        """The record as its owner sees it: where it is stored is ours to know, but its `path` (the
        object's name under the owner's images, `<uid>.<ext>`) is what a batch CSV's path column takes."""
        out = {k: v for k, v in vars(self).items() if k != "uri"}
        out["path"] = self.uri.rsplit("/", 1)[-1]
        return out


# A record, its four index entries and its category count in one atomic step (one command to send
# and one reply to read: a MULTI pipeline of the same seven writes costs three times the client CPU).
_ADD = """
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
for i = 2, 5 do redis.call('ZADD', KEYS[i], ARGV[2], ARGV[1]) end
redis.call('HINCRBY', KEYS[6], ARGV[3], 1)
"""


class Images:
    """The image records of every user, on the same Redis as the accounts."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._add = redis.register_script(_ADD)

    async def add(self, record: ImageRecord) -> None:
        fields = {**vars(record), "top_k": json.dumps(record.top_k)}
        indexes = [_index(owner, label) for owner in (record.owner, None) for label in (None, record.label)]
        flat = [str(item) for pair in fields.items() for item in pair]
        await self._add(
            keys=[f"kc:image:{record.uid}", *indexes, f"kc:categories:{record.owner}"],
            args=[record.uid, repr(record.time), record.label, *flat],
        )

    async def get(self, uid: str) -> ImageRecord | None:
        if len(uid) > 64:  # no uid is longer: not worth a key lookup
            return None
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


async def remove(images: Images, record: ImageRecord) -> None:
    async with images.redis.pipeline(transaction=True) as pipe:
        pipe.delete(f"kc:image:{record.uid}")
        for owner in (record.owner, None):
            for label in (None, record.label):
                pipe.zrem(_index(owner, label), record.uid)
        pipe.hincrby(f"kc:categories:{record.owner}", record.label, -1)
        await pipe.execute()


async def categories(images: Images, owner: str) -> dict[str, int]:
    counts = await images.redis.hgetall(f"kc:categories:{owner}")
    return {label: int(n) for label, n in sorted(counts.items()) if int(n) > 0}


def now() -> float:
    return round(time.time(), 3)


async def page(
    images: Images, owner: str | None, offset: int, limit: int, category: str | None
) -> tuple[list[ImageRecord], int]:
    """Newest first: one user's records (everyone's for None), of one category if given; and the total."""
    index = _index(owner, category)
    total = int(await images.redis.zcard(index))
    uids = await images.redis.zrevrange(index, offset, offset + limit - 1)
    return [r for r in [await images.get(u) for u in uids] if r is not None], total


def _index(owner: str | None, label: str | None) -> str:
    """The sorted set of uids by time for an owner (or everyone) and a label (or all labels)."""
    base = f"kc:images:{owner}" if owner else "kc:images"
    return f"{base}:label:{label}" if label is not None else base
