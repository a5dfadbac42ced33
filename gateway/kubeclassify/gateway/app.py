"""The FastAPI application: `create_app(settings)`; run it with `kubeclassify gateway run`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import stamina
from fastapi import FastAPI, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from kubeclassify.core.kubeapi import api_client
from kubeclassify.core.storage import ObjectStore
from kubeclassify.gateway import errors
from kubeclassify.gateway.accounts import Accounts
from kubeclassify.gateway.backends import BatchBackend, Platform, ScheduleBackend
from kubeclassify.gateway.cancel import cancelling, stop_if_cancelled, stop_tasks
from kubeclassify.gateway.catalog import Catalog, ModelDeployments, Predictors
from kubeclassify.gateway.config import GatewayConfig, GatewaySettings
from kubeclassify.gateway.deps import ensure_admin
from kubeclassify.gateway.fetches import UrlFetches
from kubeclassify.gateway.kube_batches import KubernetesBatches
from kubeclassify.gateway.local_batches import LocalBatches, SecondReplica
from kubeclassify.gateway.middleware import PerRequest
from kubeclassify.gateway.routes import (
    accounts,
    batches,
    classify,
    credits,
    health,
    images,
    models,
    schedules,
    web,
)
from kubeclassify.gateway.schedules import Scheduler
from kubeclassify.gateway.security import PasswordPool, VerifiedTokens
from kubeclassify.gateway.signin import SignIn
from kubeclassify.gateway.webhooks import Webhooks

log = logging.getLogger(__name__)

DESCRIPTION = """Image classification: accounts and sign-in, usage credits, single images, CSV and daily
batches, schedules, webhooks, and the images and categories each user has.

Sign in with `POST /v1/auth/token` (the OAuth2 password form) and send `Authorization: Bearer
<token>`, or send an API key (`POST /v1/keys`) as `X-API-Key`, or use HTTP Basic. Errors are
`application/problem+json` documents (RFC 9457) whose `detail` says what to do; each operation lists
the statuses it answers with. Times are RFC 3339, in UTC."""


def _catalog(config: GatewayConfig, http: aiohttp.ClientSession) -> Catalog:
    if config.models_source == "predictors":
        return Predictors(config.predictors, http)
    return ModelDeployments(api_client(config.kubeconfig), config.namespace)


def _batch_backend(platform: Platform) -> BatchBackend:
    if platform.config.batch_backend == "kubernetes":
        return KubernetesBatches(platform, api_client(platform.config.kubeconfig))
    return LocalBatches(platform)


async def _retry(start: Callable[[], Awaitable[None]]) -> None:
    """Call `start` until Redis answers (and, for the local backend, no other gateway holds it),
    waiting from 1 s, doubling, up to 30 s between tries (stamina)."""
    try:
        async for attempt in stamina.retry_context(
            on=_not_started, attempts=None, timeout=None, wait_initial=1.0, wait_max=30.0
        ):
            with attempt:
                await start()
    except (RedisError, SecondReplica) as e:  # not tried again: the gateway is stopping
        stop_if_cancelled(e)
        raise


def _not_started(error: Exception) -> bool:
    """Whether to try starting again after `error` (never while being cancelled: see gateway.cancel)."""
    if not isinstance(error, RedisError | SecondReplica) or cancelling():
        return False
    log.warning("the gateway's background work cannot start yet", extra={"error": str(error)})
    return True


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    config = settings.gateway

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = Redis.from_url(config.redis_url.get_secret_value(), decode_responses=True)
        app.state.store = ObjectStore(settings.s3)
        # aiohttp, the one HTTP client: httpx's async client costs ~20x its CPU per call (make bench-http).
        app.state.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
        app.state.accounts = Accounts(redis)
        app.state.tokens = VerifiedTokens(config.token_secret.get_secret_value())
        app.state.passwords = PasswordPool(config.password_workers)
        app.state.signin = SignIn(app.state.accounts, config, app.state.passwords)
        app.state.fetches = UrlFetches(config.fetch_workers, config.fetches_per_account)
        app.state.catalog = _catalog(config, app.state.http)
        app.state.admin_ready = False
        platform = Platform(config, app.state.accounts, app.state.store, app.state.catalog, settings.s3)
        app.state.batch_backend = _batch_backend(platform)
        webhooks = Webhooks(redis, config)
        local = config.batch_backend == "local"
        scheduler = Scheduler(platform, app.state.batch_backend) if local else None
        schedules: ScheduleBackend = scheduler or app.state.batch_backend  # kubernetes: the operator ticks
        app.state.schedules = schedules

        async def start() -> None:
            await ensure_admin(app)
            await webhooks.start()
            await app.state.batch_backend.start()
            if scheduler is not None and not scheduler.running:
                await scheduler.start()

        # What is loaded by now lives as long as the process: keep it out of every garbage collection.
        gc.freeze()
        retrying = None
        try:  # what started is stopped, also when starting fails (e.g. a second local-backend replica)
            try:
                await start()
            except RedisError as e:  # Redis may come up later: start then; /readyz says so meanwhile
                log.warning(
                    "Redis is not reachable yet; the first admin, batches and schedules start when it is",
                    extra={"error": str(e)},
                )
                retrying = asyncio.create_task(_retry(start))
            yield
        finally:
            await stop_tasks([retrying])
            if scheduler is not None and scheduler.running:
                await scheduler.stop()
            await app.state.batch_backend.stop()
            await webhooks.stop()
            await app.state.http.close()
            await redis.aclose()
            app.state.passwords.close()
            app.state.fetches.close()

    # /docs and /redoc load their scripts from this gateway (fastapi-offline ships them), never from a
    # CDN: they work on an air-gapped cluster, and under the same-origin policy of the web page
    app = FastAPIOffline(
        title="KubeClassify",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url="/redoc",
        static_url="/docs-assets",
    )
    app.state.config = config
    errors.install(app)
    form = 64 * 1024  # what a form adds around the file
    limits = {"/v1/batches": config.max_csv_bytes + form}
    app.add_middleware(PerRequest, body_limit=config.max_upload_bytes + form, limits=limits)
    if config.trusted_proxies:  # the client is who the trusted proxies say it is
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=config.trusted_proxies)
    if config.cors_origins:  # outermost, so errors carry CORS headers too
        app.add_middleware(
            CORSMiddleware, allow_origins=config.cors_origins, allow_methods=["*"], allow_headers=["*"]
        )

    routers = (
        health.router,
        accounts.router,
        credits.router,
        classify.router,
        images.router,
        models.router,
        batches.router,
        schedules.router,
        web.router,
    )
    for router in routers:
        app.include_router(router)

    if config.metrics_port is None:  # else `kubeclassify gateway run` serves them on that port

        @app.get("/metrics", include_in_schema=False)
        async def prometheus() -> Response:
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
