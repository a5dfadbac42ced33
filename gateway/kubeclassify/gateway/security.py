"""Passwords (argon2id), access tokens (HS256, pinned), and API keys (random, stored as SHA-256).

A password hash is slow on purpose; an API key has 256 bits of entropy, so a fast SHA-256 digest is
enough to store it and to look it up, and a stolen digest is useless."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cachetools import TLRUCache

ALGORITHM = "HS256"
API_KEY_PREFIX = "kc_"
_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verified when a name is unknown, so that a miss costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, stored: str | None) -> bool:
    """Whether `password` matches the stored hash; takes as long when there is no account."""
    try:
        return _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


class PasswordPool:
    """Hashing and verifying passwords on a few threads of their own: argon2id takes 64 MiB and tens
    of milliseconds by design, so on the event loop a burst of sign-ins would stall every request,
    and on the default pool it would queue ahead of S3 calls and /readyz. argon2 releases the GIL."""

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(self._pool, hash_password, password)

    async def verify(self, password: str, stored: str | None) -> bool:
        return await asyncio.get_running_loop().run_in_executor(self._pool, verify_password, password, stored)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class Claims:
    """Who a token speaks for, and the account's token generation it was issued in: signing out,
    a password change or disabling the account moves the generation on, and older tokens stop."""

    username: str
    role: str
    expires: dt.datetime
    generation: int = 0


def create_token(
    username: str, role: str, secret: str, ttl_seconds: int, generation: int = 0
) -> tuple[str, dt.datetime]:
    """A signed access token and when it expires."""
    now = dt.datetime.now(dt.UTC)
    expires = now + dt.timedelta(seconds=ttl_seconds)
    payload = {
        "sub": username,
        "role": role,
        "iat": now,
        "exp": expires,
        "typ": "access",
        "gen": generation,
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM), expires


def decode_token(token: str, secret: str) -> Claims | None:
    """The token's claims, or None when it is malformed, tampered with, expired, or not HS256."""
    try:
        payload = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub", "iat"]}
        )
    except jwt.PyJWTError:
        return None
    generation = payload.get("gen", 0)
    if payload.get("typ") != "access" or not isinstance(payload.get("sub"), str):
        return None
    if not isinstance(generation, int) or isinstance(generation, bool):
        return None
    return Claims(
        payload["sub"],
        str(payload.get("role", "user")),
        dt.datetime.fromtimestamp(payload["exp"], dt.UTC),
        generation,
    )


class VerifiedTokens:
    """Tokens this process has verified, with their claims: a client's next requests with the same
    token skip the signature and JSON work (most of what authentication costs). Only tokens that
    verified are kept, each until it expires; at most `size`, the least recently used dropped first.
    Used from the event loop only (cachetools' caches are not thread-safe)."""

    def __init__(self, secret: str, size: int = 10_000) -> None:
        self._secret = secret
        self._claims: TLRUCache[str, Claims] = TLRUCache(size, ttu=_expiry, timer=time.time)

    def claims(self, token: str) -> Claims | None:
        """The token's claims, or None when it is not valid (now)."""
        known = self._claims.get(token)
        if known is None:
            known = decode_token(token, self._secret)
            if known is None:
                return None
            self._claims[token] = known
        return known


def _expiry(token: str, claims: Claims, now: float) -> float:
    return claims.expires.timestamp()


def new_api_key() -> tuple[str, str]:
    """A new API key and its id (the id is not secret; it names the key in lists)."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32), secrets.token_hex(6)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
