"""What the gateway's tests share: a fresh Redis database, a token secret, signing up, digit images."""

from __future__ import annotations

import asyncio
import io
import secrets

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image
from redis.asyncio import Redis

from kubeclassify.core.local import RedisServer

TOKEN_SECRET = "a-test-token-secret-of-forty-characters!!"
PASSWORD = "a long enough password"


def fresh_redis_url(redis_server: RedisServer, db: int | None = None) -> str:
    """The URL of a Redis database of the test's own (1-15, random unless given), emptied first."""
    url = redis_server.url.rsplit("/", 1)[0] + f"/{db if db is not None else secrets.randbelow(15) + 1}"

    async def flush() -> None:
        r = Redis.from_url(url)
        await r.flushdb()
        await r.aclose()

    asyncio.run(flush())
    return url


def sign_up(client: TestClient, username: str = "alice", password: str = PASSWORD) -> str:
    """Register `username` and sign in; the access token."""
    assert client.post("/v1/accounts", json={"username": username, "password": password}).status_code == 201
    resp = client.post("/v1/auth/token", data={"username": username, "password": password})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


def digit_png(index: int) -> tuple[bytes, str]:
    """Digit `index` of scikit-learn's digits as an 8x8 PNG, and its label."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = (digits.images[index] * (255.0 / 16.0)).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue(), str(digits.target[index])
