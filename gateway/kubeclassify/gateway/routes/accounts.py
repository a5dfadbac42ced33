"""Accounts, sign-in, and API keys."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException
from pydantic import BaseModel, Field

from kubeclassify.gateway.accounts import USERNAME, public
from kubeclassify.gateway.deps import AccountsDep, ConfigDep, CurrentUser
from kubeclassify.gateway.errors import problems
from kubeclassify.gateway.security import create_token

router = APIRouter(prefix="/v1", tags=["accounts"], responses=problems("4XX"))


class Registration(BaseModel):
    username: str = Field(
        pattern=USERNAME.pattern,
        description="3-32 lower-case letters, digits and dashes; starts with a letter.",
    )
    password: str = Field(min_length=10, max_length=256, description="At least 10 characters.")


class Account(BaseModel):
    username: str
    role: str
    created: str
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
    created: str


class NewKey(KeyInfo):
    key: str = Field(description="The key itself: shown this once, never again.")


@router.post("/accounts", status_code=201, response_model=Account, summary="Register")
async def register(body: Registration, accounts: AccountsDep, config: ConfigDep) -> Any:
    user = await accounts.create_user(body.username, body.password, "user", config.starting_credits)
    if user is None:
        raise HTTPException(409, f"the name {body.username!r} is taken")
    return {**public(user), "credits": config.starting_credits}


@router.post("/auth/token", response_model=Token, summary="Sign in (OAuth2 password form)")
async def token(
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=256)],
    accounts: AccountsDep,
    config: ConfigDep,
) -> Any:
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
    return {**public(user), "credits": user.credits}


@router.post("/keys", status_code=201, response_model=NewKey, summary="Create an API key")
async def create_key(body: KeyRequest, user: CurrentUser, accounts: AccountsDep) -> Any:
    key, info = await accounts.create_key(user.username, body.name)
    return {"id": info.id, "name": info.name, "created": info.created, "key": key}


@router.get("/keys", response_model=list[KeyInfo], summary="My API keys (never the keys themselves)")
async def list_keys(user: CurrentUser, accounts: AccountsDep) -> Any:
    return [{"id": k.id, "name": k.name, "created": k.created} for k in await accounts.keys(user.username)]


@router.delete("/keys/{key_id}", status_code=204, summary="Revoke an API key")
async def revoke_key(key_id: str, user: CurrentUser, accounts: AccountsDep) -> None:
    if not await accounts.revoke_key(user.username, key_id):
        raise HTTPException(404, f"no key {key_id!r}")
