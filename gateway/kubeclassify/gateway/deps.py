"""What routes depend on: settings, the account store, and the caller (token, API key or Basic)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.security import (
    APIKeyHeader,
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)

from kubeclassify.gateway.accounts import Accounts, User
from kubeclassify.gateway.config import GatewayConfig
from kubeclassify.gateway.security import API_KEY_PREFIX

_bearer = HTTPBearer(auto_error=False, description="An access token from /v1/auth/token, or an API key.")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key from /v1/keys.")
_basic = HTTPBasic(auto_error=False, description="Username and password.")


async def get_config(request: Request) -> GatewayConfig:
    config: GatewayConfig = request.app.state.config
    return config


async def get_accounts(request: Request) -> Accounts:
    accounts: Accounts = request.app.state.accounts
    return accounts


ConfigDep = Annotated[GatewayConfig, Depends(get_config)]
AccountsDep = Annotated[Accounts, Depends(get_accounts)]

UNAUTHORIZED = HTTPException(
    401, "sign in: a Bearer token, an X-API-Key, or Basic credentials", headers={"WWW-Authenticate": "Bearer"}
)


async def current_user(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
    basic: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
) -> User:
    """The caller, or 401; then the caller's rate limit (429 with Retry-After)."""
    # Every request runs this: state is read directly, not through two more dependencies to solve.
    state = request.app.state
    config: GatewayConfig = state.config
    accounts: Accounts = state.accounts
    username: str | None = None
    subject = ""
    if api_key or (bearer and bearer.credentials.startswith(API_KEY_PREFIX)):
        key = api_key or (bearer.credentials if bearer else "")
        username = await accounts.key_owner(key)
        subject = f"key:{key[-8:]}"
    elif bearer is not None:
        claims = state.tokens.claims(bearer.credentials)
        username = claims.username if claims else None
    elif basic is not None:
        known = await accounts.authenticate(basic.username, basic.password)
        username = known.username if known else None
    if username is None:
        raise UNAUTHORIZED
    user, wait = await accounts.signed_in(
        username, subject or f"user:{username}", config.rate_limit_per_minute
    )
    if user is None:
        raise UNAUTHORIZED
    if wait:
        raise HTTPException(429, "too many requests: slow down", headers={"Retry-After": str(wait)})
    return user


async def admin_user(user: Annotated[User, Depends(current_user)]) -> User:
    if not user.is_admin:
        raise HTTPException(403, "this needs an admin")
    return user


CurrentUser = Annotated[User, Depends(current_user)]
AdminUser = Annotated[User, Depends(admin_user)]


async def ensure_admin(app: FastAPI) -> None:
    """Create (or update) the first admin from settings, once Redis answers."""
    config = app.state.config
    if not app.state.admin_ready and (password_hash := config.admin_hash()) is not None:
        await app.state.accounts.ensure_admin(config.admin_username, password_hash, config.starting_credits)
        app.state.admin_ready = True
