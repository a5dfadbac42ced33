"""What routes depend on: settings, what the app holds (storage, the model catalog, the batch and
schedule backends), the records on Redis, the caller (token, API key or Basic), and the one
owner-or-admin rule. Each is a dependency, so a test can override it."""

from __future__ import annotations

from typing import Annotated, Protocol, TypeVar

import aiohttp
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.security import (
    APIKeyHeader,
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)

from kubeclassify.core.storage import ObjectStore
from kubeclassify.gateway.accounts import Accounts, User
from kubeclassify.gateway.backends import BatchBackend, ScheduleBackend
from kubeclassify.gateway.batches import Batches
from kubeclassify.gateway.catalog import Catalog
from kubeclassify.gateway.config import GatewayConfig
from kubeclassify.gateway.fetches import UrlFetches
from kubeclassify.gateway.images import Images
from kubeclassify.gateway.ledger import Ledger
from kubeclassify.gateway.schedules import Schedules
from kubeclassify.gateway.security import API_KEY_PREFIX, PasswordPool, verify_password
from kubeclassify.gateway.signin import UNAUTHORIZED, SignIn

_bearer = HTTPBearer(auto_error=False, description="An access token from /v1/auth/token, or an API key.")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key from /v1/keys.")
_basic = HTTPBasic(auto_error=False, description="Username and password.")


async def get_config(request: Request) -> GatewayConfig:
    config: GatewayConfig = request.app.state.config
    return config


async def get_accounts(request: Request) -> Accounts:
    accounts: Accounts = request.app.state.accounts
    return accounts


class _Owned(Protocol):
    @property
    def owner(self) -> str: ...


R = TypeVar("R", bound=_Owned)


def owned(record: R | None, user: User, what: str) -> R:
    """The record when `user` owns it or is an admin; 404 otherwise: another user's record is not
    there for you, not told apart from one that does not exist. The one owner-or-admin rule."""
    if record is None or (record.owner != user.username and not user.is_admin):
        raise HTTPException(404, f"no {what}")
    return record


ConfigDep = Annotated[GatewayConfig, Depends(get_config)]
AccountsDep = Annotated[Accounts, Depends(get_accounts)]


# What the app holds (made in its lifespan), each as a dependency a test can override.


async def get_store(request: Request) -> ObjectStore:
    store: ObjectStore = request.app.state.store
    return store


async def get_catalog(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


async def get_batch_backend(request: Request) -> BatchBackend:
    backend: BatchBackend = request.app.state.batch_backend
    return backend


async def get_schedule_backend(request: Request, config: ConfigDep) -> ScheduleBackend:
    if config.manifest is None:
        raise HTTPException(409, "no manifest is configured here, so there is nothing to schedule")
    backend: ScheduleBackend = request.app.state.schedules
    return backend


async def get_http(request: Request) -> aiohttp.ClientSession:
    http: aiohttp.ClientSession = request.app.state.http  # the pool of calls to predictors
    return http


async def get_fetches(request: Request) -> UrlFetches:
    fetches: UrlFetches = request.app.state.fetches
    return fetches


async def get_passwords(request: Request) -> PasswordPool:
    passwords: PasswordPool = request.app.state.passwords
    return passwords


StoreDep = Annotated[ObjectStore, Depends(get_store)]
HttpDep = Annotated[aiohttp.ClientSession, Depends(get_http)]
PasswordsDep = Annotated[PasswordPool, Depends(get_passwords)]
FetchesDep = Annotated[UrlFetches, Depends(get_fetches)]
CatalogDep = Annotated[Catalog, Depends(get_catalog)]
BatchBackendDep = Annotated[BatchBackend, Depends(get_batch_backend)]
ScheduleBackendDep = Annotated[ScheduleBackend, Depends(get_schedule_backend)]


# The records on the accounts' Redis.


async def get_images(accounts: AccountsDep) -> Images:
    return Images(accounts.redis)


async def get_batches(accounts: AccountsDep) -> Batches:
    return Batches(accounts.redis)


async def get_schedules(accounts: AccountsDep) -> Schedules:
    return Schedules(accounts.redis)


async def get_ledger(accounts: AccountsDep) -> Ledger:
    return Ledger(accounts.redis)


ImagesDep = Annotated[Images, Depends(get_images)]
BatchesDep = Annotated[Batches, Depends(get_batches)]
SchedulesDep = Annotated[Schedules, Depends(get_schedules)]
LedgerDep = Annotated[Ledger, Depends(get_ledger)]


async def get_signin(request: Request) -> SignIn:
    signin: SignIn = request.app.state.signin
    return signin


SignInDep = Annotated[SignIn, Depends(get_signin)]


def client_host(request: Request) -> str | None:
    """The client's address (behind TRUSTED_PROXIES, the one they forwarded)."""
    return request.client.host if request.client else None


async def optional_user(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
    basic: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
) -> User | None:
    """The caller, or None when the request carries no credentials at all; 401 for wrong ones,
    429 (Retry-After) over the sign-in limits or the account's request rate."""
    # Every request runs this: state is read directly, not through two more dependencies to solve.
    state = request.app.state
    signin: SignIn = state.signin
    accounts: Accounts = state.accounts
    host = client_host(request)
    username: str | None = None
    generation: int | None = None
    if api_key or (bearer and bearer.credentials.startswith(API_KEY_PREFIX)):
        username = await accounts.key_owner(api_key or (bearer.credentials if bearer else ""))
    elif bearer is not None:
        claims = state.tokens.claims(bearer.credentials)
        username, generation = (claims.username, claims.generation) if claims else (None, None)
    elif basic is not None:
        username = (await signin.password(basic.username, basic.password, host, "basic")).username
    else:
        return None
    user, wait = (
        await accounts.signed_in(username, state.config.rate_limit_per_minute, generation)
        if username is not None
        else (None, 0)
    )
    if user is None:
        raise await signin.refused(host)
    if wait:
        raise HTTPException(429, "too many requests: slow down", headers={"Retry-After": str(wait)})
    return user


async def current_user(user: Annotated[User | None, Depends(optional_user)]) -> User:
    """The caller, or 401."""
    if user is None:
        raise UNAUTHORIZED
    return user


async def admin_user(user: Annotated[User, Depends(current_user)]) -> User:
    if not user.is_admin:
        raise HTTPException(403, "this needs an admin")
    return user


OptionalUser = Annotated[User | None, Depends(optional_user)]
CurrentUser = Annotated[User, Depends(current_user)]
AdminUser = Annotated[User, Depends(admin_user)]


async def ensure_admin(app: FastAPI) -> None:
    """Create (or take over, or update) the first admin from settings, once Redis answers."""
    state = app.state
    config: GatewayConfig = state.config
    if state.admin_ready:
        return
    if config.admin_password_hash is not None:
        wanted = config.admin_password_hash.get_secret_value()

        def same(stored: str | None) -> bool:
            return stored == wanted

        password_hash = wanted
    elif config.admin_password is not None:
        plain = config.admin_password.get_secret_value()

        def same(stored: str | None) -> bool:  # each replica hashes with its own salt: compare by verifying
            return stored is not None and verify_password(plain, stored)

        password_hash = await state.passwords.hash(plain)
    else:
        state.admin_ready = True  # no admin from settings
        return
    await state.accounts.ensure_admin(config.admin_username, password_hash, config.starting_credits, same)
    state.admin_ready = True
