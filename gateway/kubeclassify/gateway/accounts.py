"""Accounts, API keys, credits, sign-in limits, request rates and the audit trail, in Redis.

Keys: `kc:user:<name>` (hash: password, role, created, gen, disabled), `kc:keys:<name>` (hash: key
id → digest), `kc:apikey:<digest>` (hash: owner, id, name, created), `kc:credits:<name>` (integer),
`kc:audit:<name>` (a capped stream), and counters that expire: `kc:fail:name:<name>`,
`kc:fail:addr:<address>`, `kc:signup:<address>`, `kc:rate:<name>:<minute>` (requests counted in
that minute, for a sliding minute's rate).

An account's `gen` is its token generation: access tokens carry the one they were issued in, and
signing out, a new password, a takeover or disabling moves it on, so every older token stops."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from kubeclassify.gateway.security import key_digest, new_api_key

log = logging.getLogger(__name__)

USERNAME = re.compile(r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")  # also a DNS label: names resources we create

# Take `amount` from a balance only when it covers it; -1 (and nothing taken) when it does not.
# One script is one atomic step in Redis: concurrent debits never take a balance below zero.
_DEBIT = """
local balance = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount = tonumber(ARGV[1])
if balance < amount then return -1 end
return redis.call('DECRBY', KEYS[1], amount)
"""


# Who is signing in, their balance, and this request counted for their rate limit: one step.
# The rate is a sliding minute, as a sliding-window counter keeps it: this minute's count plus last
# minute's weighted by the part of it still inside the last 60 s (ARGV[1]); a request is counted only
# when that stays within the limit (ARGV[2]). A fixed minute let a client send twice the limit
# across a minute's turn. Returns the user's fields, the balance, 1 or 0 (counted or refused), and
# the two counts the wait is computed from.
_SIGN_IN = """
local user = redis.call('HMGET', KEYS[1], 'role', 'created', 'gen', 'disabled')
local credits = redis.call('GET', KEYS[2])
local current = tonumber(redis.call('GET', KEYS[3]) or '0')
local previous = tonumber(redis.call('GET', KEYS[4]) or '0')
local counted = 0
if previous * tonumber(ARGV[1]) + current + 1 <= tonumber(ARGV[2]) then
  if redis.call('INCR', KEYS[3]) == 1 then redis.call('EXPIRE', KEYS[3], 121) end
  counted = 1
end
return {user[1], user[2], user[3], user[4], credits, counted, current, previous}
"""

# Take one attempt from each counter (KEYS[i], at most ARGV[2i-1] in ARGV[2i] seconds), or none:
# {0, 0} when every counter had room, else {i, seconds until counter i frees up}. Checking and
# counting in one step is what keeps concurrent guesses within the limit.
_TAKE = """
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[2 * i - 1]) then
    return {i, math.max(redis.call('TTL', key), 1)}
  end
end
for i, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then redis.call('EXPIRE', key, ARGV[2 * i]) end
end
return {0, 0}
"""

# Give an attempt back (a sign-in that succeeded): counters count failures only.
_GIVE_BACK = """
for _, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') > 0 then redis.call('DECR', key) end
end
return 0
"""

# A new key for KEYS[1]'s owner unless it already has ARGV[1] keys: 1 when made, 0 when at the cap.
_NEW_KEY = """
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[2], 'owner', ARGV[2], 'id', ARGV[3], 'name', ARGV[4], 'created', ARGV[5])
redis.call('HSET', KEYS[1], ARGV[3], ARGV[6])
return 1
"""

AUDIT_LENGTH = 1000  # events kept per account (the stream is trimmed to about this many)


@dataclass(frozen=True)
class User:
    username: str
    role: str
    created: str
    credits: int = 0  # the balance when the request signed in
    generation: int = 0  # the token generation (see the module's docstring)
    disabled: bool = False

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
        self.clock: Callable[[], float] = time.time  # the rate's minutes are this clock's
        self._debit = redis.register_script(_DEBIT)
        self._sign_in = redis.register_script(_SIGN_IN)
        self._take = redis.register_script(_TAKE)
        self._give_back = redis.register_script(_GIVE_BACK)
        self._new_key = redis.register_script(_NEW_KEY)

    # -- users ----------------------------------------------------------------------------------

    async def create_user(self, username: str, password_hash: str, role: str, credits: int) -> User | None:
        """A new account with its starting credits; None when the name is taken."""
        created = _now()
        key = f"kc:user:{username}"
        if not await self.redis.hsetnx(key, "password", password_hash):
            return None
        await self.redis.hset(key, mapping={"role": role, "created": created, "gen": 0})
        await self.redis.set(f"kc:credits:{username}", credits, nx=True)
        return User(username, role, created)

    async def user(self, username: str) -> User | None:
        raw = await self.redis.hgetall(f"kc:user:{username}")
        if not raw or "role" not in raw:
            return None
        return User(
            username,
            raw["role"],
            raw.get("created", ""),
            generation=int(raw.get("gen") or 0),
            disabled=raw.get("disabled") == "1",
        )

    async def password_hash(self, username: str) -> str | None:
        """The stored hash; None for an unknown (or malformed) name."""
        if not USERNAME.match(username):
            return None
        stored: str | None = await self.redis.hget(f"kc:user:{username}", "password")
        return stored

    async def set_password(self, username: str, password_hash: str) -> None:
        """A new password: every access token of the account stops working."""
        await self.redis.hset(f"kc:user:{username}", "password", password_hash)
        await self.revoke_tokens(username)

    async def revoke_tokens(self, username: str) -> None:
        await self.redis.hincrby(f"kc:user:{username}", "gen", 1)

    async def set_disabled(self, username: str, disabled: bool) -> None:
        """Disable (or enable) an account: while disabled its keys, tokens and password are refused;
        its tokens stay revoked when it is enabled again."""
        await self.redis.hset(f"kc:user:{username}", "disabled", "1" if disabled else "0")
        if disabled:
            await self.revoke_tokens(username)

    async def users(self) -> list[User]:
        """Every account, with its balance, by name."""
        out = []
        async for key in self.redis.scan_iter(match="kc:user:*", count=500):
            user = await self.user(key.split(":", 2)[2])
            if user is not None:
                out.append(
                    User(
                        user.username,
                        user.role,
                        user.created,
                        await self.balance(user.username),
                        user.generation,
                        user.disabled,
                    )
                )
        return sorted(out, key=lambda u: u.username)

    async def ensure_admin(
        self, username: str, password_hash: str, credits: int, same_password: Callable[[str | None], bool]
    ) -> None:
        """The first admin, from settings. Made when missing. An account of that name that is not an
        admin was made by someone else (the name is reserved, so only before the reservation): its
        keys and tokens are revoked as it is taken over. An admin whose password no longer matches
        the setting (`same_password(stored)` is false) gets the new one, and its tokens stop."""
        if await self.create_user(username, password_hash, "admin", credits) is not None:
            await self.audit(username, "account-created", by="settings")
            return
        existing = await self.user(username)
        stored = await self.redis.hget(f"kc:user:{username}", "password")
        if existing is not None and existing.is_admin and not existing.disabled and same_password(stored):
            return
        if existing is None or not existing.is_admin:
            for key_id in list(await self.redis.hgetall(f"kc:keys:{username}")):
                await self.revoke_key(username, key_id)
        await self.redis.hset(
            f"kc:user:{username}", mapping={"password": password_hash, "role": "admin", "disabled": "0"}
        )
        await self.revoke_tokens(username)
        await self.audit(
            username,
            "role-changed" if existing is None or not existing.is_admin else "password-changed",
            by="settings",
            role="admin",
        )

    # -- API keys -------------------------------------------------------------------------------

    async def create_key(self, username: str, name: str, most: int) -> tuple[str, ApiKey] | None:
        """A new key for `username`: the key itself (shown once) and what is kept of it; None when
        the account already has `most` keys."""
        key, key_id = new_api_key()
        digest = key_digest(key)
        created = _now()
        made = await self._new_key(
            keys=[f"kc:keys:{username}", f"kc:apikey:{digest}"],
            args=[most, username, key_id, name, created, digest],
        )
        if not made:
            return None
        await self.audit(username, "key-created", key_id=key_id, name=name)
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
        await self.audit(username, "key-revoked", key_id=key_id)
        return True

    async def key_owner(self, key: str) -> str | None:
        """The name of the account an API key belongs to, or None for an unknown or revoked key."""
        owner: str | None = await self.redis.hget(f"kc:apikey:{key_digest(key)}", "owner")
        return owner

    async def signed_in(
        self, username: str, per_minute: int, generation: int | None = None
    ) -> tuple[User | None, int]:
        """The account (with its balance), or None when it is gone, disabled, or `generation` (a
        token's) is not its current one; and the seconds it must wait before its next request (0: go
        ahead), counting this request: one round trip to Redis for all of it."""
        now = self.clock()
        minute, into = int(now // 60), now % 60
        keys = [
            f"kc:user:{username}",
            f"kc:credits:{username}",
            f"kc:rate:{username}:{minute}",
            f"kc:rate:{username}:{minute - 1}",
        ]
        found = await self._sign_in(keys=keys, args=[(60 - into) / 60, per_minute])
        role, created, gen, disabled, credits, counted, current, previous = found
        generation_now = int(gen or 0)
        if role is None or disabled == "1" or (generation is not None and generation != generation_now):
            return None, 0
        wait = 0 if counted else rate_wait(int(current), int(previous), into, per_minute)
        return User(username, role, created or "", int(credits or 0), generation_now), wait

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

    # -- limits -----------------------------------------------------------------------------------

    async def take(self, *counters: tuple[str, int, int]) -> tuple[int, int]:
        """One attempt from each counter (key, most, window seconds), all or none: (0, 0), or the
        1-based index of the first counter that is full and the seconds until it frees up."""
        if not counters:
            return 0, 0
        args = [v for _, most, window in counters for v in (most, window)]
        full, wait = await self._take(keys=[key for key, _, _ in counters], args=args)
        return int(full), int(wait)

    async def give_back(self, *keys: str) -> None:
        if keys:
            await self._give_back(keys=list(keys))

    # -- audit ------------------------------------------------------------------------------------

    async def audit(self, username: str, event: str, **fields: str | int) -> None:
        """Record `event` in the account's trail (the last AUDIT_LENGTH events) and in the log."""
        entry = {"event": event, "time": _now(), **{k: str(v) for k, v in fields.items()}}
        await self.redis.xadd(
            f"kc:audit:{username}", {"entry": json.dumps(entry)}, maxlen=AUDIT_LENGTH, approximate=True
        )
        log.info("audit: %s", event, extra={"audit": {"account": username, **entry}})

    async def trail(self, username: str, count: int) -> list[dict[str, str]]:
        """The account's last `count` events, newest first."""
        found = await self.redis.xrevrange(f"kc:audit:{username}", count=count)
        return [json.loads(values["entry"]) for _, values in found]


def rate_wait(current: int, previous: int, into: float, per_minute: int) -> int:
    """Whole seconds until a request fits the sliding minute again, `into` seconds into this minute
    with `current` requests counted in it and `previous` in the last, if none come meanwhile."""
    room = per_minute - 1  # what the earlier requests may weigh for one more to fit
    if current <= room:  # it fits in this minute, once the last minute's weigh little enough
        wait = 60 * (1 - (room - current) / previous) - into if previous else 0.0
    else:  # in the next minute, once this minute's weigh little enough
        wait = 60 - into + 60 * (1 - room / current)
    return max(1, math.ceil(wait - 1e-9))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def public(user: User) -> dict[str, Any]:
    return {"username": user.username, "role": user.role, "created": user.created}
