"""The FastAPI application: `create_app(settings)`; run it with `kubeclassify gateway run`."""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from kubeclassify.core.logs import request_id
from kubeclassify.core.storage import ObjectStore
from kubeclassify.gateway import errors, metrics
from kubeclassify.gateway.accounts import Accounts
from kubeclassify.gateway.catalog import Catalog, ModelDeployments, Predictors
from kubeclassify.gateway.config import GatewayConfig, GatewaySettings
from kubeclassify.gateway.deps import ensure_admin
from kubeclassify.gateway.routes import accounts, classify, credits, health, images, models, web

log = logging.getLogger(__name__)


def _catalog(config: GatewayConfig, http: httpx.AsyncClient) -> Catalog:
    if config.models_source == "predictors":
        return Predictors(config.predictors, http)
    import kubernetes

    if config.kubeconfig:
        api = kubernetes.config.new_client_from_config(config_file=config.kubeconfig)
    else:
        cfg = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_incluster_config(client_configuration=cfg)
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config(client_configuration=cfg)
        api = kubernetes.client.ApiClient(cfg)
    return ModelDeployments(api, config.namespace)


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    config = settings.gateway

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = Redis.from_url(config.redis_url.get_secret_value(), decode_responses=True)
        app.state.store = ObjectStore(settings.s3)
        app.state.http = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50)
        )
        app.state.accounts = Accounts(redis)
        app.state.catalog = _catalog(config, app.state.http)
        app.state.admin_ready = config.admin_password_hash is None
        try:
            await ensure_admin(app)
        except RedisError as e:  # Redis may come up later: /readyz retries, and says so meanwhile
            log.warning(
                "Redis is not reachable yet; the first admin is made when it is", extra={"error": str(e)}
            )
        try:
            yield
        finally:
            await app.state.http.aclose()
            await redis.aclose()

    app = FastAPI(title="KubeClassify", version="0.1.0", lifespan=lifespan, docs_url="/docs")
    app.state.config = config
    errors.install(app)
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=config.cors_origins, allow_methods=["*"], allow_headers=["*"]
        )

    body_limit = config.max_upload_bytes + 64 * 1024  # an image and a form around it

    @app.middleware("http")
    async def limit_bodies(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > body_limit:
            return errors.problem(413, f"the request body is over {body_limit} bytes")
        return await call_next(request)

    @app.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")  # templates, not raw paths
        metrics.REQUESTS.labels(route, request.method, str(response.status_code)).inc()
        metrics.LATENCY.labels(route).observe(time.perf_counter() - started)
        return response

    @app.middleware("http")
    async def with_request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        rid = request.headers.get("X-Request-ID") or secrets.token_hex(8)
        token = request_id.set(rid[:64])
        try:
            response = await call_next(request)
        finally:
            request_id.reset(token)
        response.headers["X-Request-ID"] = rid[:64]
        return response

    routers = (
        health.router,
        accounts.router,
        credits.router,
        classify.router,
        images.router,
        models.router,
        web.router,
    )
    for router in routers:
        app.include_router(router)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
