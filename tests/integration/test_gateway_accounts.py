"""The gateway's accounts, sign-in, API keys, credits and limits, against a real redis-server:
every endpoint with its auth and its bad inputs."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from fastapi.testclient import TestClient
from harness.gateway import PASSWORD, TOKEN_SECRET, fresh_redis_url, sign_up
from pydantic import SecretStr
from redis.asyncio import Redis

from kubeclassify.cli.services import RedisServer, start_redis
from kubeclassify.core.settings import S3Settings
from kubeclassify.gateway.accounts import Accounts
from kubeclassify.gateway.app import create_app
from kubeclassify.gateway.config import GatewayConfig, GatewaySettings
from kubeclassify.gateway.security import hash_password

SECRET = TOKEN_SECRET
ADMIN_PASSWORD = "correct horse battery staple"


def settings(redis_server: RedisServer, **gateway: object) -> GatewaySettings:
    config = GatewayConfig(
        registration="open",
        redis_url=SecretStr(fresh_redis_url(redis_server)),
        token_secret=SecretStr(SECRET),
        admin_password_hash=SecretStr(hash_password(ADMIN_PASSWORD)),
        starting_credits=5,
        **gateway,  # type: ignore[arg-type]
    )
    return GatewaySettings(gateway=config)


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[TestClient]:
    with TestClient(create_app(settings(redis_server, login_failures=3))) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_register_sign_in_and_me(client: TestClient) -> None:
    token = sign_up(client)
    me = client.get("/v1/me", headers=bearer(token))
    assert me.status_code == 200
    assert (me.json()["username"], me.json()["role"], me.json()["credits"]) == ("alice", "user", 5)
    assert me.headers["X-Request-ID"]
    again = client.post("/v1/accounts", json={"username": "alice", "password": "another long password"})
    assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "body",
    [
        {"username": "Alice", "password": "a long enough password"},  # upper case
        {"username": "a", "password": "a long enough password"},  # too short
        {"username": "alice", "password": "short"},
        {"username": "alice"},
        {"username": "../etc", "password": "a long enough password"},
    ],
)
def test_bad_registrations_are_refused_with_the_field_named(client: TestClient, body: dict[str, str]) -> None:
    resp = client.post("/v1/accounts", json=body)
    assert resp.status_code == 422
    problem = resp.json()
    assert problem["status"] == 422 and problem["errors"][0]["field"] in ("username", "password")


def test_wrong_passwords_and_bad_tokens_are_refused(client: TestClient) -> None:
    token = sign_up(client)
    assert (
        client.post("/v1/auth/token", data={"username": "alice", "password": "wrong password"}).status_code
        == 401
    )
    assert (
        client.post("/v1/auth/token", data={"username": "nobody", "password": "whatever it is"}).status_code
        == 401
    )
    assert client.get("/v1/me").status_code == 401
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert client.get("/v1/me", headers=bearer(tampered)).status_code == 401
    now = dt.datetime.now(dt.UTC)
    expired = jwt.encode(
        {"sub": "alice", "role": "user", "iat": now, "exp": now - dt.timedelta(seconds=5), "typ": "access"},
        SECRET,
        algorithm="HS256",
    )
    assert client.get("/v1/me", headers=bearer(expired)).status_code == 401
    unsigned = jwt.encode(
        {"sub": "alice", "role": "admin", "iat": now, "exp": now + dt.timedelta(hours=1), "typ": "access"},
        None,
        algorithm="none",
    )
    assert client.get("/v1/me", headers=bearer(unsigned)).status_code == 401, "alg none is refused"
    forged = jwt.encode(
        {"sub": "alice", "role": "admin", "iat": now, "exp": now + dt.timedelta(hours=1), "typ": "access"},
        "another secret of some forty characters!",
        algorithm="HS256",
    )
    assert client.get("/v1/me", headers=bearer(forged)).status_code == 401


def test_repeated_failed_sign_ins_must_wait(client: TestClient) -> None:
    sign_up(client)
    for _ in range(3):
        assert (
            client.post(
                "/v1/auth/token", data={"username": "alice", "password": "wrong password"}
            ).status_code
            == 401
        )
    blocked = client.post("/v1/auth/token", data={"username": "alice", "password": "a long enough password"})
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0


def test_api_keys_are_shown_once_work_and_can_be_revoked(client: TestClient) -> None:
    token = sign_up(client)
    created = client.post("/v1/keys", json={"name": "laptop"}, headers=bearer(token))
    assert created.status_code == 201
    key, key_id = created.json()["key"], created.json()["id"]
    listed = client.get("/v1/keys", headers=bearer(token)).json()
    assert listed == [{"id": key_id, "name": "laptop", "created": created.json()["created"]}]
    assert client.get("/v1/me", headers={"X-API-Key": key}).json()["username"] == "alice"
    assert client.get("/v1/me", headers=bearer(key)).json()["username"] == "alice"
    assert client.delete(f"/v1/keys/{key_id}", headers=bearer(token)).status_code == 204
    assert client.get("/v1/me", headers={"X-API-Key": key}).status_code == 401, "a revoked key is refused"
    assert client.delete(f"/v1/keys/{key_id}", headers=bearer(token)).status_code == 404
    assert client.post("/v1/keys", json={"name": ""}, headers=bearer(token)).status_code == 422
    bare = client.post("/v1/keys", headers=bearer(token))  # no body at all: the error names it
    assert bare.status_code == 422 and bare.json()["errors"] == [
        {"field": "body", "message": "Field required"}
    ]


def test_basic_auth_is_accepted(client: TestClient) -> None:
    sign_up(client)
    good = base64.b64encode(b"alice:a long enough password").decode()
    bad = base64.b64encode(b"alice:wrong").decode()
    assert client.get("/v1/me", headers={"Authorization": f"Basic {good}"}).status_code == 200
    assert client.get("/v1/me", headers={"Authorization": f"Basic {bad}"}).status_code == 401


def test_admins_refill_and_list_and_users_cannot(client: TestClient) -> None:
    user = sign_up(client)
    admin = client.post("/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD}).json()[
        "access_token"
    ]
    assert client.post("/v1/admin/credits/alice", json={}, headers=bearer(user)).status_code == 403
    assert client.get("/v1/admin/credits", headers=bearer(user)).status_code == 403
    refilled = client.post("/v1/admin/credits/alice", json={"amount": 7}, headers=bearer(admin))
    assert refilled.json() == {"username": "alice", "credits": 12}
    assert client.post("/v1/admin/credits/alice", json={}, headers=bearer(admin)).json()["credits"] == 112
    assert client.post("/v1/admin/credits/nobody", json={}, headers=bearer(admin)).status_code == 404
    assert (
        client.post("/v1/admin/credits/alice", json={"amount": -3}, headers=bearer(admin)).status_code == 422
    )
    assert {"username": "alice", "credits": 112} in client.get(
        "/v1/admin/credits", headers=bearer(admin)
    ).json()
    assert client.get("/v1/credits", headers=bearer(user)).json() == {"username": "alice", "credits": 112}


def test_bad_account_requests_get_clear_errors_and_change_nothing(client: TestClient) -> None:
    user = sign_up(client)
    admin = client.post("/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD}).json()[
        "access_token"
    ]
    unknown = client.patch("/v1/admin/accounts/nobody", json={"disabled": True}, headers=bearer(admin))
    assert unknown.status_code == 404 and "nobody" in unknown.json()["detail"]
    assert client.get("/v1/admin/accounts/nobody/audit", headers=bearer(admin)).status_code == 404
    for limit in (0, 10_000, "many"):
        assert client.get(f"/v1/me/audit?limit={limit}", headers=bearer(user)).status_code == 422, limit
    short = client.post(
        "/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "short"},
        headers=bearer(user),
    )
    assert short.status_code == 422 and "new_password" in short.text
    again = client.post("/v1/auth/token", data={"username": "alice", "password": PASSWORD})
    assert again.status_code == 200, "the password did not change"


def test_the_first_admin_from_a_plain_password_secret(redis_server: RedisServer) -> None:
    """The Helm chart generates a password (it cannot make an argon2id hash): the gateway hashes it."""
    config = settings(redis_server).gateway.model_copy(
        update={"admin_password_hash": None, "admin_password": SecretStr("a generated admin password")}
    )
    with TestClient(create_app(GatewaySettings(gateway=config))) as c:
        good = c.post("/v1/auth/token", data={"username": "admin", "password": "a generated admin password"})
        bad = c.post("/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD})
        assert good.status_code == 200 and bad.status_code == 401
        me = c.get("/v1/me", headers=bearer(good.json()["access_token"])).json()
    assert me["role"] == "admin"


def test_rate_limit_answers_429_with_retry_after(redis_server: RedisServer) -> None:
    """Three requests a minute over a sliding minute: the fourth and later wait until the weight of
    the last minute's requests has fallen enough. The gateway's clock is held, 15 s into a minute."""
    with TestClient(create_app(settings(redis_server, rate_limit_per_minute=3))) as c:
        token = sign_up(c)
        accounts = c.app.state.accounts  # type: ignore[attr-defined]
        minute = (accounts.clock() // 60 + 2) * 60
        accounts.clock = lambda: minute + 15.0
        answers = [c.get("/v1/me", headers=bearer(token)) for _ in range(5)]
        accounts.clock = lambda: minute + 60.0  # the three still weigh 3: no room
        next_minute = c.get("/v1/me", headers=bearer(token))
        accounts.clock = lambda: minute + 80.0  # they weigh 3 x 40/60 = 2: room for one
        later = [c.get("/v1/me", headers=bearer(token)).status_code for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    assert answers[3].headers["Retry-After"] == "65", "45 s to the next minute, then 20 s"
    assert next_minute.status_code == 429 and next_minute.headers["Retry-After"] == "20"
    assert later == [200, 429]


def test_a_burst_across_a_minute_boundary_gets_the_limit_not_twice_it(redis_server: RedisServer) -> None:
    """A fixed window allowed the limit at the end of one minute and again at the start of the next."""
    with TestClient(create_app(settings(redis_server, rate_limit_per_minute=4))) as c:
        token = sign_up(c)
        accounts = c.app.state.accounts  # type: ignore[attr-defined]
        minute = (accounts.clock() // 60 + 2) * 60
        codes = []
        for at in (58.0, 59.0, 61.0, 62.0):
            accounts.clock = lambda at=at: minute + at
            codes += [c.get("/v1/me", headers=bearer(token)).status_code for _ in range(2)]
    assert codes.count(200) == 4, codes


def test_concurrent_debits_never_overdraw(redis_server: RedisServer) -> None:
    url = fresh_redis_url(redis_server)

    async def race() -> tuple[list[int | None], int]:
        redis = Redis.from_url(url, decode_responses=True)
        accounts = Accounts(redis)
        await accounts.create_user("racer", "a long enough password", "user", credits=20)
        results = await asyncio.gather(*(accounts.debit("racer", 1) for _ in range(50)))
        left = await accounts.balance("racer")
        await redis.aclose()
        return results, left

    results, left = asyncio.run(race())
    assert sum(r is not None for r in results) == 20 and left == 0


def test_health_and_readiness(
    client: TestClient, redis_server: RedisServer, s3_settings: S3Settings, bucket: str
) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = settings(redis_server, images_uri=f"s3://{bucket}/images")
    ready.s3 = s3_settings
    with TestClient(create_app(ready)) as c:
        assert c.get("/readyz").json() == {"status": "ok", "redis": "ok", "s3": "ok", "models": None}
    no_bucket = ready.model_copy(deep=True)
    no_bucket.gateway.images_uri = "s3://no-such-bucket-here/images"
    with TestClient(create_app(no_bucket)) as c:
        resp = c.get("/readyz")
        assert resp.status_code == 503 and resp.json()["s3"] == "BucketNotFound"
    no_redis = ready.model_copy(deep=True)
    no_redis.gateway.redis_url = SecretStr("redis://:wrong@127.0.0.1:1/0")
    with TestClient(create_app(no_redis)) as c:
        resp = c.get("/readyz")
        assert resp.status_code == 503 and resp.json()["redis"] == "ConnectionError"


def test_the_development_token_secret_is_refused_outside_development() -> None:
    with pytest.raises(ValueError, match="TOKEN_SECRET"):
        GatewaySettings(environment="production")
    assert GatewaySettings(environment="development").gateway.token_secret.get_secret_value()


def test_a_full_redis_is_a_503_to_retry_not_a_500(tmp_path: Path) -> None:
    """The chart runs Redis with maxmemory and noeviction: full, it refuses writes."""
    import redis

    server = start_redis(tmp_path / "data", tmp_path / "logs")
    try:
        with TestClient(create_app(settings(server))) as client:
            sign_up(client)
            admin = redis.Redis.from_url(server.url)
            admin.config_set("maxmemory-policy", "noeviction")
            admin.config_set("maxmemory", 1)  # below what is used: every write is refused
            bob = {"username": "bob", "password": "a long enough password"}
            full = client.post("/v1/accounts", json=bob)
            assert full.status_code == 503, full.text
            assert (
                full.headers["retry-after"] == "5"
                and full.headers["content-type"] == "application/problem+json"
            )
            admin.config_set("maxmemory", 0)
            assert client.post("/v1/accounts", json=bob).status_code == 201
            admin.close()
    finally:
        server.stop()
