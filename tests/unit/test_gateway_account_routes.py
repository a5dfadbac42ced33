"""The routes whose refusals depend on what the accounts store holds (sign-in, API keys, accounts,
credits, the request rate, the schedule cap), with no server: the gateway's own Accounts code, its
Lua scripts included, runs on fakeredis (an in-memory Redis; the scripts run in lupa's Lua). The
rest is stood in as in test_gateway_routes. The integration tier runs the same against redis-server."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fakeredis import FakeAsyncRedis
from fastapi.testclient import TestClient
from harness.standins import Catalog, Untouched
from pydantic import SecretStr

from kubeclassify.gateway import deps
from kubeclassify.gateway.accounts import Accounts
from kubeclassify.gateway.app import create_app
from kubeclassify.gateway.config import GatewayConfig, GatewaySettings
from kubeclassify.gateway.security import PasswordPool, VerifiedTokens, create_token, hash_password
from kubeclassify.gateway.signin import SignIn

PASSWORD = "a long enough password"
SECRET = "a-test-secret-that-is-long-enough-for-hs256"
LIMITS = {"login_failures": 3, "max_api_keys": 2, "max_schedules": 1, "rate_limit_per_minute": 1000}


@contextlib.asynccontextmanager
async def no_lifespan(_: Any) -> AsyncIterator[None]:
    yield  # the state is made below: nothing connects anywhere


@pytest.fixture
def client() -> Iterator[TestClient]:
    config = GatewayConfig(
        token_secret=SecretStr(SECRET),
        redis_url=SecretStr("redis://127.0.0.1:1/0"),
        manifest={"uri": "file:///nowhere/manifest.csv"},
        **LIMITS,  # type: ignore[arg-type]
    )
    app = create_app(GatewaySettings(gateway=config))
    app.router.lifespan_context = no_lifespan
    accounts = Accounts(FakeAsyncRedis(decode_responses=True))
    passwords = PasswordPool(1)
    app.state.accounts = accounts
    app.state.passwords = passwords
    app.state.tokens = VerifiedTokens(config.token_secret.get_secret_value())
    app.state.signin = SignIn(accounts, config, passwords)
    app.dependency_overrides.update(
        {
            deps.get_catalog: lambda: Catalog({"digits": "http://predictor"}),
            deps.get_store: Untouched,
            deps.get_http: Untouched,
            deps.get_fetches: Untouched,
            deps.get_batch_backend: Untouched,
            deps.get_schedule_backend: lambda: None,
        }
    )
    with TestClient(app) as c:
        digest = hash_password(PASSWORD)
        for name, role, credits in [("alice", "user", 0), ("root", "admin", 0)]:
            c.portal.call(accounts.create_user, name, digest, role, credits)
        yield c
    passwords.close()


def basic(name: str, password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


def bearer(client: TestClient, name: str) -> dict[str, str]:
    """A token as the gateway issues one at sign-in (signing in with the password, tested once
    below, costs an argon2 verification, a tenth of a second or more)."""
    token, _ = create_token(name, "admin" if name == "root" else "user", SECRET, 600)
    return {"Authorization": f"Bearer {token}"}


def test_signing_in_gives_a_token_that_works(client: TestClient) -> None:
    answer = client.post("/v1/auth/token", data={"username": "alice", "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    me = client.get("/v1/me", headers={"Authorization": f"Bearer {answer.json()['access_token']}"})
    assert me.json()["username"] == "alice"


def test_wrong_passwords_are_refused_then_the_name_is_locked_out(client: TestClient) -> None:
    wrong = [client.post("/v1/auth/token", data={"username": "alice", "password": "no"}) for _ in range(3)]
    assert [a.status_code for a in wrong] == [401] * 3
    locked = client.post("/v1/auth/token", data={"username": "alice", "password": PASSWORD})
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    assert client.get("/v1/me", headers=basic("alice")).status_code == 429, "Basic counts the same"


def test_an_unknown_name_a_forged_token_and_an_unknown_key_are_refused(client: TestClient) -> None:
    assert client.post("/v1/auth/token", data={"username": "nobody", "password": PASSWORD}).status_code == 401
    assert client.get("/v1/me", headers={"Authorization": "Bearer not.a.token"}).status_code == 401
    assert client.get("/v1/me", headers={"X-API-Key": "kc_unknown"}).status_code == 401


def test_registration_is_for_admins_and_a_taken_name_is_refused(client: TestClient) -> None:
    body = {"username": "bob", "password": PASSWORD}
    assert client.post("/v1/accounts", json=body, headers=bearer(client, "alice")).status_code == 403
    taken = client.post("/v1/accounts", json={**body, "username": "alice"}, headers=bearer(client, "root"))
    assert taken.status_code == 409 and "taken" in taken.text


def test_api_keys_are_capped_and_an_unknown_one_cannot_be_revoked(client: TestClient) -> None:
    alice = bearer(client, "alice")
    made = [client.post("/v1/keys", json={"name": f"k{i}"}, headers=alice).status_code for i in range(3)]
    assert made == [201, 201, 409]
    assert client.delete("/v1/keys/0123456789ab", headers=alice).status_code == 404


def test_admin_routes_refuse_what_is_not_there(client: TestClient) -> None:
    root = bearer(client, "root")
    assert client.patch("/v1/admin/accounts/nobody", json={"disabled": True}, headers=root).status_code == 404
    assert client.get("/v1/admin/accounts/nobody/audit", headers=root).status_code == 404
    assert client.post("/v1/admin/credits/nobody", json={"amount": 5}, headers=root).status_code == 404
    itself = client.patch("/v1/admin/accounts/root", json={"disabled": True}, headers=root)
    assert itself.status_code == 409 and "own account" in itself.text


def test_a_disabled_account_is_refused_every_way(client: TestClient) -> None:
    alice = bearer(client, "alice")
    key = client.post("/v1/keys", json={"name": "k"}, headers=alice).json()["key"]
    off = client.patch("/v1/admin/accounts/alice", json={"disabled": True}, headers=bearer(client, "root"))
    assert off.status_code == 200
    for headers in (alice, basic("alice"), {"X-API-Key": key}):
        assert client.get("/v1/me", headers=headers).status_code == 401, headers


def test_classify_without_credits_is_402_and_nothing_else_is_touched(client: TestClient) -> None:
    answer = client.post(
        "/v1/classify",
        data={"model": "digits"},
        files={"file": ("a.png", b"x")},
        headers=bearer(client, "alice"),
    )
    assert answer.status_code == 402 and "not enough credits" in answer.text


def test_a_second_schedule_over_the_cap_is_409(client: TestClient) -> None:
    from kubeclassify.gateway.schedules import ScheduleRecord, Schedules

    accounts: Accounts = client.app.state.accounts  # type: ignore[attr-defined]
    kept = ScheduleRecord(
        name="alice-daily", owner="alice", model="digits", cron="0 2 * * *", time_zone="UTC"
    )
    client.portal.call(Schedules(accounts.redis).save, kept)
    body = {"cron": "0 3 * * *", "time_zone": "UTC", "model": "digits"}
    answer = client.post("/v1/schedules", json=body, headers=bearer(client, "alice"))
    assert answer.status_code == 409 and "the most allowed" in answer.text


def test_the_request_rate_is_429_with_retry_after(client: TestClient) -> None:
    client.app.state.config.rate_limit_per_minute = 2  # type: ignore[attr-defined]
    alice = bearer(client, "alice")
    codes = [client.get("/v1/me", headers=alice) for _ in range(3)]
    assert [a.status_code for a in codes] == [200, 200, 429] and int(codes[2].headers["Retry-After"]) > 0


def refill(client: TestClient, name: str, amount: int) -> None:
    root = bearer(client, "root")
    assert client.post(f"/v1/admin/credits/{name}", json={"amount": amount}, headers=root).status_code == 200


def test_not_an_image_is_415_and_its_credit_comes_back(client: TestClient) -> None:
    refill(client, "alice", 3)
    alice = bearer(client, "alice")
    form, files = {"model": "digits"}, {"file": ("a.png", b"not an image")}
    answer = client.post("/v1/classify", data=form, files=files, headers=alice)
    assert answer.status_code == 415 and "not an image" in answer.text
    assert client.get("/v1/credits", headers=alice).json()["credits"] == 3


def test_a_batch_its_owner_cannot_pay_for_is_402_before_its_csv_is_stored(client: TestClient) -> None:
    refill(client, "alice", 1)
    csv = b"url\nhttp://93.184.216.34/a.png\nhttp://93.184.216.34/b.png\n"
    answer = client.post(
        "/v1/batches",
        data={"model": "digits"},
        files={"file": ("b.csv", csv)},
        headers=bearer(client, "alice"),
    )
    assert answer.status_code == 402 and "2 images cost 2" in answer.text


def test_a_batch_with_a_webhook_needs_a_webhook_secret_first(client: TestClient) -> None:
    form = {"model": "digits", "webhook_url": "http://93.184.216.34/hook"}
    csv = b"url\nhttp://93.184.216.34/a.png\n"
    answer = client.post(
        "/v1/batches", data=form, files={"file": ("b.csv", csv)}, headers=bearer(client, "alice")
    )
    assert answer.status_code == 409 and "make a webhook secret first" in answer.text


def test_a_new_password_needs_the_current_one(client: TestClient) -> None:
    body = {"current_password": "not it", "new_password": "another long enough password"}
    answer = client.post("/v1/me/password", json=body, headers=bearer(client, "alice"))
    assert answer.status_code == 403 and "current password is wrong" in answer.text


def test_a_body_over_the_limit_is_413_unread(client: TestClient) -> None:
    big = b"x" * (client.app.state.config.max_upload_bytes + (1 << 20))  # type: ignore[attr-defined]
    answer = client.post("/v1/auth/token", content=big, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and "over" in answer.text


def test_redis_away_is_503_to_try_again(client: TestClient) -> None:
    away = Accounts(FakeAsyncRedis(decode_responses=True, connected=False))  # every command fails
    client.app.state.accounts = client.app.state.signin.accounts = away  # type: ignore[attr-defined]
    answer = client.get("/v1/me", headers=basic("alice"))
    assert answer.status_code == 503, answer.text


def test_a_private_image_url_is_400_and_its_credit_comes_back(client: TestClient) -> None:
    from kubeclassify.gateway.fetches import UrlFetches

    client.app.dependency_overrides[deps.get_fetches] = lambda: UrlFetches(1, 1)  # type: ignore[attr-defined]
    refill(client, "alice", 2)
    alice = bearer(client, "alice")
    for url, says in [
        ("http://127.0.0.1/a.png", "not allowed"),
        ("http://[::ffff:10.0.0.1]/a.png", "not allowed"),
        ("file:///etc/passwd", "not an http(s) URL"),
    ]:
        answer = client.post("/v1/classify", data={"model": "digits", "url": url}, headers=alice)
        assert answer.status_code == 400 and says in answer.text, (url, answer.text)
    assert client.get("/v1/credits", headers=alice).json()["credits"] == 2


def test_a_batch_csv_over_its_limit_is_413(client: TestClient) -> None:
    limit = client.app.state.config.max_csv_bytes  # type: ignore[attr-defined]
    csv = b"url\n" + b"http://93.184.216.34/a.png\n" * (limit // 26 + 1)
    files = {"file": ("b.csv", csv)}
    answer = client.post(
        "/v1/batches", data={"model": "digits"}, files=files, headers=bearer(client, "alice")
    )
    assert answer.status_code == 413, answer.text


def test_open_registration_is_limited_per_address_and_closed_is_closed(client: TestClient) -> None:
    config = client.app.state.config  # type: ignore[attr-defined]
    config.registration, config.signups_per_hour = "open", 1
    body = {"username": "bob", "password": PASSWORD}
    assert client.post("/v1/accounts", json=body).status_code == 201
    again = client.post("/v1/accounts", json={**body, "username": "cid"})
    assert again.status_code == 429 and int(again.headers["Retry-After"]) > 0
    reserved = client.post("/v1/accounts", json={**body, "username": config.admin_username})
    assert reserved.status_code == 409 and "reserved" in reserved.text
    config.registration = "closed"
    assert client.post("/v1/accounts", json=body, headers=bearer(client, "root")).status_code == 403


def test_a_schedule_for_an_unknown_model_is_404(client: TestClient) -> None:
    body = {"cron": "0 3 * * *", "time_zone": "UTC", "model": "nope"}
    answer = client.post("/v1/schedules", json=body, headers=bearer(client, "alice"))
    assert answer.status_code == 404 and "no model 'nope'" in answer.text
