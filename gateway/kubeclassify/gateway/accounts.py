"""Accounts, API keys, credits, failed-login counts and rate limits, in Redis.

Keys: `kc:user:<name>` (hash: password, role, created), `kc:keys:<name>` (hash: key id → digest),
`kc:apikey:<digest>` (hash: owner, id, name, created), `kc:credits:<name>` (integer),
`kc:loginfail:<name>` and `kc:rate:<subject>:<minute>` (counters that expire)."""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from kubeclassify.gateway.security import hash_password, key_digest, new_api_key, verify_password

USERNAME = re.compile(r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")  # also a DNS label: names resources we create

# Take `amount` from a balance only when it covers it; -1 (and nothing taken) when it does not.
# One script is one atomic step in Redis: concurrent debits never take a balance below zero.
_DEBIT = """
local balance = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount = tonumber(ARGV[1])
if balance < amount then return -1 end
return redis.call('DECRBY', KEYS[1], amount)
"""


# Who is signing in, their balance, and one more request counted for their rate limit: one step.
_SIGN_IN = """
local user = redis.call('HMGET', KEYS[1], 'role', 'created')
local credits = redis.call('GET', KEYS[2])
local count = redis.call('INCR', KEYS[3])
if count == 1 then redis.call('EXPIRE', KEYS[3], 61) end
return {user[1], user[2], credits, count}
"""


@dataclass(frozen=True)
class User:
    username: str
    role: str
    created: str
    credits: int = 0  # the balance when the request signed in

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    created: str


class Accounts:
    """What the gateway keeps about people, on one Redis client."""

    def __init__(self, redis: Redis) -> None:
        """`redis` must decode responses (`decode_responses=True`): every value is a str."""
        self.redis: Any = redis
        self._debit = redis.register_script(_DEBIT)
        self._sign_in = redis.register_script(_SIGN_IN)

    # -- users ----------------------------------------------------------------------------------

    async def create_user(
        self, username: str, password: str | None, role: str, credits: int, password_hash: str | None = None
    ) -> User | None:
        """A new account with its starting credits; None when the name is taken."""
        created = _now()
        stored = password_hash or hash_password(password or "")
        key = f"kc:user:{username}"
        if not await self.redis.hsetnx(key, "password", stored):
            return None
        await self.redis.hset(key, mapping={"role": role, "created": created})
        await self.redis.set(f"kc:credits:{username}", credits, nx=True)
        return User(username, role, created)

    async def user(self, username: str) -> User | None:
        raw = await self.redis.hgetall(f"kc:user:{username}")
        if not raw or "role" not in raw:
            return None
        return User(username, raw["role"], raw.get("created", ""))

    async def authenticate(self, username: str, password: str) -> User | None:
        """The user when the password is right (as slow when the name is unknown)."""
        stored = (
            await self.redis.hget(f"kc:user:{username}", "password") if USERNAME.match(username) else None
        )
        if not verify_password(password, stored):
            return None
        return await self.user(username)

    async def ensure_admin(self, username: str, password_hash: str, credits: int) -> None:
        """The first admin, from settings: created once, its password hash kept in step with the Secret."""
        if await self.create_user(username, None, "admin", credits, password_hash=password_hash) is None:
            await self.redis.hset(f"kc:user:{username}", mapping={"password": password_hash, "role": "admin"})

    # -- API keys -------------------------------------------------------------------------------

    async def create_key(self, username: str, name: str) -> tuple[str, ApiKey]:
        """A new key for `username`: the key itself (shown once) and what is kept of it."""
        key, key_id = new_api_key()
        digest = key_digest(key)
        created = _now()
        await self.redis.hset(
            f"kc:apikey:{digest}", mapping={"owner": username, "id": key_id, "name": name, "created": created}
        )
        await self.redis.hset(f"kc:keys:{username}", key_id, digest)
        return key, ApiKey(key_id, name, created)

    async def keys(self, username: str) -> list[ApiKey]:
        digests = await self.redis.hgetall(f"kc:keys:{username}")
        out = []
        for digest in digests.values():
            raw = await self.redis.hgetall(f"kc:apikey:{digest}")
            if raw:
                out.append(ApiKey(raw["id"], raw["name"], raw["created"]))
        return sorted(out, key=lambda k: k.created)

    async def revoke_key(self, username: str, key_id: str) -> bool:
        digest = await self.redis.hget(f"kc:keys:{username}", key_id)
        if digest is None:
            return False
        await self.redis.delete(f"kc:apikey:{digest}")
        await self.redis.hdel(f"kc:keys:{username}", key_id)
        return True

    async def key_owner(self, key: str) -> str | None:
        """The name of the account an API key belongs to, or None for an unknown or revoked key."""
        owner: str | None = await self.redis.hget(f"kc:apikey:{key_digest(key)}", "owner")
        return owner

    async def signed_in(self, username: str, subject: str, per_minute: int) -> tuple[User | None, int]:
        """The account (with its balance) and the seconds `subject` must wait before its next
        request (0: go ahead), counting this request: one round trip to Redis for all of it."""
        now = time.time()
        keys = [f"kc:user:{username}", f"kc:credits:{username}", f"kc:rate:{subject}:{int(now // 60)}"]
        role, created, credits, count = await self._sign_in(keys=keys)
        if role is None:
            return None, 0
        wait = 0 if int(count) <= per_minute else 60 - int(now % 60)
        return User(username, role, created or "", int(credits or 0)), wait

    # -- credits ----------------------------------------------------------------------------------

    async def balance(self, username: str) -> int:
        return int(await self.redis.get(f"kc:credits:{username}") or 0)

    async def debit(self, username: str, amount: int) -> int | None:
        """Take `amount` credits; the new balance, or None (and nothing taken) when short."""
        left = int(await self._debit(keys=[f"kc:credits:{username}"], args=[amount]))
        return None if left < 0 else left

    async def credit(self, username: str, amount: int) -> int:
        return int(await self.redis.incrby(f"kc:credits:{username}", amount))

    async def balances(self) -> dict[str, int]:
        out: dict[str, int] = {}
        async for key in self.redis.scan_iter(match="kc:credits:*", count=500):
            name = key.split(":", 2)[2]
            out[name] = int(await self.redis.get(key) or 0)
        return dict(sorted(out.items()))

    # -- abuse ------------------------------------------------------------------------------------

    async def login_wait(self, username: str, limit: int) -> int:
        """Seconds `username` must wait before another login attempt (0: go ahead)."""
        key = f"kc:loginfail:{username}"
        failures = int(await self.redis.get(key) or 0)
        return max(0, int(await self.redis.ttl(key))) if failures >= limit else 0

    async def login_failed(self, username: str, window: int) -> None:
        key = f"kc:loginfail:{username}"
        await self.redis.incr(key)
        await self.redis.expire(key, window)

    async def login_succeeded(self, username: str) -> None:
        await self.redis.delete(f"kc:loginfail:{username}")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def public(user: User) -> dict[str, Any]:
    return {"username": user.username, "role": user.role, "created": user.created}
