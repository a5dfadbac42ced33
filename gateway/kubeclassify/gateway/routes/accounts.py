"""Accounts, sign-in, and API keys."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException
from pydantic import BaseModel, Field

from kubeclassify.gateway.accounts import USERNAME, public
from kubeclassify.gateway.deps import AccountsDep, ConfigDep, CurrentUser
from kubeclassify.gateway.errors import SIGNED_IN, problems
from kubeclassify.gateway.security import create_token

router = APIRouter(prefix="/v1", tags=["accounts"], responses=SIGNED_IN)


class Registration(BaseModel):
    username: str = Field(
        pattern=USERNAME.pattern,
        description="3-32 lower-case letters, digits and dashes; starts with a letter.",
    )
    password: str = Field(min_length=10, max_length=256, description="At least 10 characters.")


class Account(BaseModel):
    username: str
    role: str
    created: dt.datetime = Field(description="When, in RFC 3339 (UTC).")
    credits: int


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class KeyRequest(BaseModel):
    name: str = Field(min_length=1, max_length=64, description="What the key is for.")


class KeyInfo(BaseModel):
    id: str
    name: str
    created: dt.datetime = Field(description="When, in RFC 3339 (UTC).")


class NewKey(KeyInfo):
    key: str = Field(description="The key itself: shown this once, never again.")


@router.post(
    "/accounts", status_code=201, response_model=Account, summary="Register", responses=problems(409, 413)
)
async def register(body: Registration, accounts: AccountsDep, config: ConfigDep) -> Any:
    """Make an account. Names are DNS labels (they name the resources made for the user); the
    password is kept as an argon2id hash only. The account starts with the gateway's
    STARTING_CREDITS."""
    user = await accounts.create_user(body.username, body.password, "user", config.starting_credits)
    if user is None:
        raise HTTPException(409, f"the name {body.username!r} is taken")
    return {**public(user), "credits": config.starting_credits}


@router.post(
    "/auth/token", response_model=Token, summary="Sign in (OAuth2 password form)", responses=problems(413)
)
async def token(
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=256)],
    accounts: AccountsDep,
    config: ConfigDep,
) -> Any:
    """Sign in with the OAuth2 password form (username, password) and get an HS256 access token for
    `Authorization: Bearer`. After LOGIN_FAILURES wrong passwords a name must wait (429 with Retry-
    After)."""
    wait = await accounts.login_wait(username, config.login_failures)
    if wait:
        raise HTTPException(
            429, "too many failed sign-ins for this name: wait", headers={"Retry-After": str(wait)}
        )
    user = await accounts.authenticate(username, password)
    if user is None:
        await accounts.login_failed(username, config.login_lockout_seconds)
        raise HTTPException(401, "wrong username or password", headers={"WWW-Authenticate": "Bearer"})
    await accounts.login_succeeded(username)
    signed, _ = create_token(
        user.username, user.role, config.token_secret.get_secret_value(), config.token_ttl_seconds
    )
    return {"access_token": signed, "expires_in": config.token_ttl_seconds}


@router.get("/me", response_model=Account, summary="The signed-in account")
async def me(user: CurrentUser) -> Any:
    """The signed-in account: name, role, when it was made, and its credits."""
    return {**public(user), "credits": user.credits}


@router.post(
    "/keys", status_code=201, response_model=NewKey, summary="Create an API key", responses=problems(413)
)
async def create_key(body: KeyRequest, user: CurrentUser, accounts: AccountsDep) -> Any:
    """Make an API key (`kc_...`) for `X-API-Key` or `Authorization: Bearer`. The key is shown in
    this answer only: just its SHA-256 is kept."""
    key, info = await accounts.create_key(user.username, body.name)
    return {"id": info.id, "name": info.name, "created": info.created, "key": key}


@router.get("/keys", response_model=list[KeyInfo], summary="My API keys (never the keys themselves)")
async def list_keys(user: CurrentUser, accounts: AccountsDep) -> Any:
    """My API keys: id, name and when each was made (never the keys)."""
    return [{"id": k.id, "name": k.name, "created": k.created} for k in await accounts.keys(user.username)]


@router.delete("/keys/{key_id}", status_code=204, summary="Revoke an API key", responses=problems(404))
async def revoke_key(key_id: str, user: CurrentUser, accounts: AccountsDep) -> None:
    """Revoke one of my API keys: it stops working at once."""
    if not await accounts.revoke_key(user.username, key_id):
        raise HTTPException(404, f"no key {key_id!r}")
