"""Accounts, sign-in, and API keys."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request
from pydantic import Field

from kubeclassify.gateway.accounts import AUDIT_LENGTH, public
from kubeclassify.gateway.deps import (
    AccountsDep,
    AdminUser,
    ConfigDep,
    CurrentUser,
    OptionalUser,
    PasswordsDep,
    SignInDep,
    client_host,
)
from kubeclassify.gateway.errors import SIGNED_IN, problems
from kubeclassify.gateway.schemas import (
    Account,
    AccountUpdate,
    AuditEvent,
    KeyInfo,
    KeyRequest,
    PasswordChange,
    Registration,
    Token,
)
from kubeclassify.gateway.security import create_token
from kubeclassify.gateway.signin import client_key, too_many

router = APIRouter(prefix="/v1", tags=["accounts"], responses=SIGNED_IN)


class NewKey(KeyInfo):
    key: str = Field(description="The key itself: shown this once, never again.")


class AccountInfo(Account):
    disabled: bool


Audit = Annotated[int, Query(ge=1, le=AUDIT_LENGTH, description="How many, newest first.")]


@router.post(
    "/accounts",
    status_code=201,
    response_model=Account,
    summary="Register (or, as an admin, make an account)",
    responses=problems(403, 409, 413, 429),
)
async def register(
    body: Registration,
    request: Request,
    caller: OptionalUser,
    accounts: AccountsDep,
    config: ConfigDep,
    passwords: PasswordsDep,
) -> Any:
    """Make an account. Names are DNS labels (they name the resources made for the user); the
    password is kept as an argon2id hash only; the account starts with STARTING_CREDITS. Who may:
    REGISTRATION open (anyone, SIGNUPS_PER_HOUR per client address; admins without limit),
    admin-only (admins), closed (no one). The first admin's name is reserved."""
    is_admin = caller is not None and caller.is_admin
    if config.registration == "closed" or (config.registration == "admin-only" and not is_admin):
        raise HTTPException(403, f"registration is {config.registration}: ask an admin for an account")
    if body.username == config.admin_username:
        raise HTTPException(409, f"the name {body.username!r} is reserved")
    if not is_admin:
        hour = (f"kc:signup:{client_key(client_host(request))}", config.signups_per_hour, 3600)
        full, wait = await accounts.take(hour)
        if full:
            raise too_many("accounts made from this address", wait)
    password_hash = await passwords.hash(body.password)
    user = await accounts.create_user(body.username, password_hash, "user", config.starting_credits)
    if user is None:
        raise HTTPException(409, f"the name {body.username!r} is taken")
    await accounts.audit(user.username, "account-created", by=caller.username if caller else "registration")
    return {**public(user), "credits": config.starting_credits}


@router.post(
    "/auth/token",
    response_model=Token,
    summary="Sign in (OAuth2 password form)",
    responses=problems(413, 429),
)
async def token(
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=256)],
    request: Request,
    signin: SignInDep,
    config: ConfigDep,
) -> Any:
    """Sign in with the OAuth2 password form (username, password) and get an HS256 access token for
    `Authorization: Bearer`. After LOGIN_FAILURES wrong passwords a name must wait (429 with Retry-
    After), and so must a client address after LOGIN_FAILURES_PER_ADDRESS failed sign-ins in a
    minute; the name's API keys and tokens keep working meanwhile."""
    user = await signin.password(username, password, client_host(request), "form")
    signed, _ = create_token(
        user.username,
        user.role,
        config.token_secret.get_secret_value(),
        config.token_ttl_seconds,
        user.generation,
    )
    return {"access_token": signed, "expires_in": config.token_ttl_seconds}


@router.post("/auth/sign-out", status_code=204, summary="Sign out everywhere")
async def sign_out(user: CurrentUser, accounts: AccountsDep) -> None:
    """Revoke every access token of my account (API keys are revoked one by one: /v1/keys)."""
    await accounts.revoke_tokens(user.username)
    await accounts.audit(user.username, "signed-out")


@router.get("/me", response_model=Account, summary="The signed-in account")
async def me(user: CurrentUser) -> Any:
    """The signed-in account: name, role, when it was made, and its credits."""
    return {**public(user), "credits": user.credits}


@router.post("/me/password", status_code=204, summary="Change my password", responses=problems(413, 429))
async def change_password(
    body: PasswordChange,
    request: Request,
    user: CurrentUser,
    signin: SignInDep,
    accounts: AccountsDep,
    passwords: PasswordsDep,
) -> None:
    """Change my password: the current one is checked like a sign-in (its failures count toward
    the lockout); every access token of the account stops working, API keys do not."""
    try:
        await signin.password(user.username, body.current_password, client_host(request), "password-change")
    except HTTPException as e:
        if e.status_code == 401:
            raise HTTPException(403, "the current password is wrong") from e
        raise
    await accounts.set_password(user.username, await passwords.hash(body.new_password))
    await accounts.audit(user.username, "password-changed")


@router.get("/me/audit", response_model=list[AuditEvent], summary="My account's audit trail")
async def my_audit(user: CurrentUser, accounts: AccountsDep, limit: Audit = 100) -> Any:
    """What happened to my account, newest first: sign-ins and failed ones (with the client
    address), sign-outs, password changes, keys made and revoked, refills, role changes."""
    return await accounts.trail(user.username, limit)


@router.post(
    "/keys",
    status_code=201,
    response_model=NewKey,
    summary="Create an API key",
    responses=problems(409, 413),
)
async def create_key(body: KeyRequest, user: CurrentUser, accounts: AccountsDep, config: ConfigDep) -> Any:
    """Make an API key (`kc_...`) for `X-API-Key` or `Authorization: Bearer`. The key is shown in
    this answer only: just its SHA-256 is kept. An account has at most MAX_API_KEYS."""
    made = await accounts.create_key(user.username, body.name, config.max_api_keys)
    if made is None:
        raise HTTPException(409, f"you have {config.max_api_keys} API keys, the most allowed: revoke one")
    key, info = made
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


@router.get(
    "/admin/accounts",
    response_model=list[AccountInfo],
    summary="Every account (admin)",
    responses=problems(403),
)
async def list_accounts(admin: AdminUser, accounts: AccountsDep) -> Any:
    """Every account with its role, credits and whether it is disabled (admin)."""
    return [{**public(u), "credits": u.credits, "disabled": u.disabled} for u in await accounts.users()]


@router.patch(
    "/admin/accounts/{username}",
    response_model=AccountInfo,
    summary="Disable or enable an account (admin)",
    responses=problems(403, 404, 409),
)
async def update_account(username: str, body: AccountUpdate, admin: AdminUser, accounts: AccountsDep) -> Any:
    """Disable an account (its password, API keys and access tokens are refused at once) or enable
    it again (its keys work again; its tokens stay revoked: it signs in anew). Not my own."""
    if username == admin.username:
        raise HTTPException(409, "an admin cannot disable their own account")
    if await accounts.user(username) is None:
        raise HTTPException(404, f"no account {username!r}")
    await accounts.set_disabled(username, body.disabled)
    await accounts.audit(username, "disabled" if body.disabled else "enabled", by=admin.username)
    user = await accounts.user(username)
    assert user is not None
    return {**public(user), "credits": await accounts.balance(username), "disabled": user.disabled}


@router.get(
    "/admin/accounts/{username}/audit",
    response_model=list[AuditEvent],
    summary="An account's audit trail (admin)",
    responses=problems(403, 404),
)
async def account_audit(username: str, admin: AdminUser, accounts: AccountsDep, limit: Audit = 100) -> Any:
    """What happened to an account, newest first (admin)."""
    if await accounts.user(username) is None:
        raise HTTPException(404, f"no account {username!r}")
    return await accounts.trail(username, limit)
