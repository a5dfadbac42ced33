"""Signing in: one path for every way in (the token form, HTTP Basic, API keys, access tokens).

- A password (form or Basic) is checked only after an attempt is taken, in one atomic step, from
  two counters: the client address' (LOGIN_FAILURES_PER_ADDRESS a minute) and the name's
  (LOGIN_FAILURES in LOGIN_LOCKOUT_SECONDS). A right password gives its attempt back, so the
  counters count failures, and concurrent guesses cannot pass the limits. The hash is checked on
  the password pool, never on the event loop.
- An API key or access token is checked first (it is cheap, and a 256-bit key cannot be guessed);
  only when it is wrong is a failure counted against the client address. So the name's lockout,
  which an attacker can trip by guessing a password, never stops that account's keys and tokens.
- The client address is the peer's, or with TRUSTED_PROXIES the first address in X-Forwarded-For
  that is not a trusted proxy (uvicorn's ProxyHeadersMiddleware, installed by the app). IPv6
  addresses are counted by their /64, which one client typically holds whole.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from fastapi import HTTPException

from kubeclassify.gateway.accounts import USERNAME, Accounts, User
from kubeclassify.gateway.config import GatewayConfig
from kubeclassify.gateway.security import PasswordPool

WRONG = HTTPException(401, "wrong username or password", headers={"WWW-Authenticate": "Bearer"})
UNAUTHORIZED = HTTPException(
    401, "sign in: a Bearer token, an X-API-Key, or Basic credentials", headers={"WWW-Authenticate": "Bearer"}
)


def client_key(host: str | None) -> str:
    """What a client address is counted as: an IPv4 address, an IPv6 /64, or the host as given."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(getattr(address, "ipv4_mapped", None) or address)


def too_many(what: str, wait: int) -> HTTPException:
    return HTTPException(429, f"too many {what}: wait", headers={"Retry-After": str(wait)})


@dataclass
class SignIn:
    accounts: Accounts
    config: GatewayConfig
    passwords: PasswordPool

    async def password(self, username: str, password: str, host: str | None, method: str) -> User:
        """The account when the password is right; 401 when not, 429 (Retry-After) while the
        address or the name has used up its failures."""
        config = self.config
        address = f"kc:fail:addr:{client_key(host)}"
        counters = [(address, config.login_failures_per_address, 60)]
        known_name = bool(USERNAME.match(username))
        if known_name:  # a name that cannot exist gets no counter of its own
            counters.append((f"kc:fail:name:{username}", config.login_failures, config.login_lockout_seconds))
        full, wait = await self.accounts.take(*counters)
        if full:
            raise too_many(
                "failed sign-ins from this address" if full == 1 else "failed sign-ins for this name", wait
            )
        stored = await self.accounts.password_hash(username) if known_name else None
        if not await self.passwords.verify(password, stored):
            if stored is not None:  # only accounts that exist get a trail
                await self.accounts.audit(username, "sign-in-failed", method=method, address=client_key(host))
            raise WRONG
        await self.accounts.give_back(*(key for key, _, _ in counters))
        user = await self.accounts.user(username)
        if user is None or user.disabled:
            raise WRONG
        await self.accounts.audit(username, "signed-in", method=method, address=client_key(host))
        return user

    async def refused(self, host: str | None) -> HTTPException:
        """The answer to a wrong key or token, counted against the client address: 401, or 429 once
        the address has used up its failures."""
        full, wait = await self.accounts.take(
            (f"kc:fail:addr:{client_key(host)}", self.config.login_failures_per_address, 60)
        )
        return too_many("failed sign-ins from this address", wait) if full else UNAUTHORIZED
