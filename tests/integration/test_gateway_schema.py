"""Schemathesis over the gateway's OpenAPI schema, against a real gateway process (real Redis,
SeaweedFS and the digits predictor): no 5xx, and every answer matches the schema (status codes,
content types, bodies). Calls are made as the admin, so admin-only operations run too."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from harness.gateway import digit_png, fresh_redis_url, gateway_env
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from kubeclassify.cli.services import GatewayServer, PredictorServer, RedisServer, start_gateway
from kubeclassify.core.settings import S3Settings
from kubeclassify.core.storage import ObjectStore
from kubeclassify.gateway.app import create_app
from kubeclassify.gateway.config import GatewaySettings
from kubeclassify.gateway.security import hash_password

ADMIN_PASSWORD = "the admin's long password"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: RedisServer,
    s3_settings: S3Settings,
    store: ObjectStore,
    digits_predictor: PredictorServer,
) -> Iterator[GatewayServer]:
    bucket = f"schema-{secrets.token_hex(4)}"
    store.create_bucket(bucket)
    store.write(f"s3://{bucket}/data/2026-11-21/a.png", digit_png(1790)[0])
    store.write(f"s3://{bucket}/data/metadata.csv", b"filepath,date\n2026-11-21/a.png,2026-11-21\n")
    settings = gateway_env(
        fresh_redis_url(redis_server),
        s3_settings,
        f"s3://{bucket}/images",
        digits_predictor,
        batches_uri=f"s3://{bucket}/batches",
        manifest=json.dumps({"uri": f"s3://{bucket}/data/metadata.csv", "root": f"s3://{bucket}/data/"}),
        admin_username="admin",
        admin_password_hash=hash_password(ADMIN_PASSWORD),
        starting_credits="100000",
        rate_limit_per_minute="1000000",
        login_failures="1000000",
    )
    server = start_gateway(tmp_path_factory.mktemp("schema-gateway"), settings)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def admin_headers(gateway: GatewayServer) -> dict[str, str]:
    resp = httpx.post(f"{gateway.url}/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


@pytest.fixture(scope="module")
def api_schema(gateway: GatewayServer) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{gateway.url}/openapi.json")


def _operations() -> list[tuple[str, str]]:
    """(method, path) of every operation the gateway documents, from the app itself."""
    app = create_app(GatewaySettings(environment="development"))
    return [(m.upper(), path) for path, item in app.openapi()["paths"].items() for m in item]


@pytest.mark.parametrize(("method", "path"), _operations())
def test_the_api_matches_its_schema(
    method: str, path: str, api_schema: schemathesis.BaseSchema, admin_headers: dict[str, str]
) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def call(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=admin_headers, checks=CHECKS)

    call()
