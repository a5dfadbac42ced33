"""Sign-in and abuse, tried as an attacker: each test is one attack on the gateway's ways in
(passwords over the form and HTTP Basic, API keys, tokens, registration, the admin bootstrap, URL
fetching) and checks that it is refused or bounded while the victim keeps working. Real Redis; the
client addresses come through a trusted proxy (X-Forwarded-For), as behind an ingress."""

from __future__ import annotations

import base64
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from harness.gateway import PASSWORD, TOKEN_SECRET, Site, fresh_redis_url
from pydantic import SecretStr

from kubeclassify.cli.services import PredictorServer, RedisServer
from kubeclassify.core.settings import S3Settings
from kubeclassify.gateway import security
from kubeclassify.gateway.app import create_app
from kubeclassify.gateway.config import GatewayConfig, GatewaySettings
from kubeclassify.gateway.security import hash_password

ADMIN_PASSWORD = "the admin's own long password"
PROXY = "10.9.8.7"  # the ingress: the only peer whose X-Forwarded-For is believed
ATTACKER = {"X-Forwarded-For": "203.0.113.66"}
VICTIM = {"X-Forwarded-For": "198.51.100.7"}


def gateway(redis_server: RedisServer, s3: S3Settings | None = None, **config: Any) -> TestClient:
    """A gateway behind the proxy; `config` overrides settings."""
    if "redis_url" not in config:  # (a fresh database is emptied first: never the one given)
        config["redis_url"] = SecretStr(fresh_redis_url(redis_server))
    settings = {
        "token_secret": SecretStr(TOKEN_SECRET),
        "admin_password_hash": SecretStr(hash_password(ADMIN_PASSWORD)),
        "registration": "open",
        "starting_credits": 5,
        "login_failures": 3,
        "login_failures_per_address": 10,
        "trusted_proxies": [PROXY],
        **config,
    }
    app = create_app(GatewaySettings(gateway=GatewayConfig(**settings), s3=s3 or S3Settings()))
    return TestClient(app, client=(PROXY, 40000))


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[TestClient]:
    with gateway(redis_server) as c:
        yield c


def basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def form(client: TestClient, username: str, password: str, headers: dict[str, str]) -> Any:
    return client.post("/v1/auth/token", data={"username": username, "password": password}, headers=headers)


def token(client: TestClient, username: str, password: str, headers: dict[str, str] = VICTIM) -> str:
    resp = form(client, username, password, headers)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


def register(client: TestClient, username: str, headers: dict[str, str] = VICTIM, **extra: Any) -> Any:
    body = {"username": username, "password": PASSWORD}
    return client.post("/v1/accounts", json=body, headers={**headers, **extra})


def new_key(client: TestClient, auth: dict[str, str]) -> str:
    resp = client.post("/v1/keys", json={"name": "automation"}, headers=auth)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["key"])


# -- passwords ----------------------------------------------------------------------------------


def test_basic_guesses_trip_the_same_lockout_as_the_form(client: TestClient) -> None:
    """HTTP Basic is a sign-in like the form: three wrong passwords over Basic lock the name for the
    form too, and the other way round."""
    assert register(client, "alice").status_code == 201
    for _ in range(3):
        assert client.get("/v1/me", headers={**ATTACKER, **basic("alice", "guess guess")}).status_code == 401
    assert client.get("/v1/me", headers={**ATTACKER, **basic("alice", "guess again")}).status_code == 429
    locked = form(client, "alice", PASSWORD, VICTIM)
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0


def test_a_locked_out_name_keeps_its_keys_and_tokens(client: TestClient) -> None:
    """Guessing the admin's password locks the name for passwords only: the admin's automation (an
    API key) and a token signed in before keep working."""
    admin_token = token(client, "admin", ADMIN_PASSWORD)
    key = new_key(client, bearer(admin_token))
    for _ in range(5):
        form(client, "admin", "a wrong guess", ATTACKER)
    assert form(client, "admin", ADMIN_PASSWORD, VICTIM).status_code == 429, "the name is locked"
    assert client.get("/v1/admin/credits", headers={**VICTIM, "X-API-Key": key}).status_code == 200
    assert client.get("/v1/admin/credits", headers={**VICTIM, **bearer(admin_token)}).status_code == 200


def test_wrong_keys_and_tokens_count_against_the_address(client: TestClient) -> None:
    """Failed keys and tokens reach the limiter: after LOGIN_FAILURES_PER_ADDRESS (10) an address
    gets 429, and other addresses, and right keys from any address, are not slowed."""
    assert register(client, "alice").status_code == 201
    key = new_key(client, bearer(token(client, "alice", PASSWORD)))
    codes = [
        client.get("/v1/me", headers={**ATTACKER, "X-API-Key": f"kc_guess{i:040d}"}).status_code
        for i in range(6)
    ] + [
        client.get("/v1/me", headers={**ATTACKER, **bearer(f"not.a.token{i}")}).status_code for i in range(6)
    ]
    assert codes == [401] * 10 + [429] * 2
    assert client.get("/v1/me", headers={**ATTACKER, "X-API-Key": key}).status_code == 200
    assert client.get("/v1/me", headers={**VICTIM, "X-API-Key": "kc_wrong"}).status_code == 401


def test_concurrent_guesses_stay_within_the_limit(client: TestClient) -> None:
    """Checking and counting are one step: 30 guesses at once get exactly LOGIN_FAILURES (3)
    answers, the rest are refused unheard."""
    assert register(client, "alice").status_code == 201
    start = threading.Barrier(30)

    def guess(i: int) -> int:
        start.wait()
        headers = {"X-Forwarded-For": f"203.0.113.{i}"}
        return int(form(client, "alice", f"guess number {i}", headers).status_code)

    with ThreadPoolExecutor(30) as pool:
        codes = Counter(pool.map(guess, range(30)))
    assert codes == Counter({401: 3, 429: 27})


def test_a_brute_force_is_bounded_while_everyone_else_keeps_working(client: TestClient) -> None:
    """60 guesses at once from one address, over Basic, the form and API keys, at a user and the
    admin: the address gets LOGIN_FAILURES_PER_ADDRESS (10) answers in all, each name at most
    LOGIN_FAILURES (3) of them, the rest are 429. Meanwhile another client signs in with the right
    password and the admin's API key keeps working."""
    admin_key = new_key(client, bearer(token(client, "admin", ADMIN_PASSWORD)))
    for name in ("alice", "bob"):
        assert register(client, name).status_code == 201
    start = threading.Barrier(66)

    def attack(i: int) -> tuple[str, int]:
        name = ("alice", "admin")[i % 2]
        start.wait()
        if i % 3 == 0:
            resp = client.get("/v1/me", headers={**ATTACKER, **basic(name, f"guess {i}")})
            return name, resp.status_code
        if i % 3 == 1:
            return name, form(client, name, f"guess {i}", ATTACKER).status_code
        return "key", client.get("/v1/me", headers={**ATTACKER, "X-API-Key": f"kc_guess{i:040d}"}).status_code

    def work(i: int) -> tuple[str, int]:
        start.wait()
        if i % 2:
            return "admin's key", client.get(
                "/v1/admin/credits", headers={**VICTIM, "X-API-Key": admin_key}
            ).status_code
        return "bob", form(client, "bob", PASSWORD, {"X-Forwarded-For": f"198.51.100.{i}"}).status_code

    with ThreadPoolExecutor(66) as pool:
        attacks = [pool.submit(attack, i) for i in range(60)]
        others = [pool.submit(work, i) for i in range(6)]
        answered = Counter(f.result() for f in attacks)
        assert [f.result()[1] for f in others] == [200] * 6
    unheard = sum(n for (_, code), n in answered.items() if code == 429)
    assert sum(n for (_, code), n in answered.items() if code == 401) == 10 and unheard == 50, answered
    assert answered[("alice", 401)] <= 3 and answered[("admin", 401)] <= 3, answered


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(redis_server: RedisServer) -> None:
    """A client that is not the proxy cannot pick the address it is counted as."""
    with gateway(redis_server, trusted_proxies=["10.0.0.0/8"]) as proxied:
        assert register(proxied, "alice").status_code == 201
        form(proxied, "alice", "a wrong guess", ATTACKER)
        events = proxied.get("/v1/me/audit", headers=bearer(token(proxied, "alice", PASSWORD))).json()
    assert [(e["event"], e["address"]) for e in events[:2]] == [
        ("signed-in", "198.51.100.7"),
        ("sign-in-failed", "203.0.113.66"),
    ]
    with gateway(redis_server, trusted_proxies=[]) as direct:  # the same peer, now not trusted
        assert register(direct, "alice").status_code == 201
        spoofed = bearer(token(direct, "alice", PASSWORD, {"X-Forwarded-For": "192.0.2.1"}))
        events = direct.get("/v1/me/audit", headers=spoofed).json()
    assert events[0]["address"] == PROXY


def test_passwords_are_hashed_off_the_event_loop(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id takes tens of milliseconds and 64 MiB: on the event loop, a burst of wrong
    passwords stalls every request. Every hash and check runs on the password pool's threads."""
    threads: list[str] = []
    real_verify, real_hash = security.verify_password, security.hash_password

    def verify(password: str, stored: str | None) -> bool:
        threads.append(threading.current_thread().name)
        return real_verify(password, stored)

    def hashed(password: str) -> str:
        threads.append(threading.current_thread().name)
        return real_hash(password)

    monkeypatch.setattr(security, "verify_password", verify)
    monkeypatch.setattr(security, "hash_password", hashed)
    assert register(client, "alice").status_code == 201
    form(client, "alice", "a wrong guess", ATTACKER)
    client.get("/v1/me", headers={**VICTIM, **basic("alice", PASSWORD)})
    assert len(threads) == 3 and all(name.startswith("argon2") for name in threads), threads


# -- registration and the admin -----------------------------------------------------------------


def test_sign_ups_are_limited_per_address_and_start_with_nothing(redis_server: RedisServer) -> None:
    """Forty sign-ups from one client no longer collect forty balances: SIGNUPS_PER_HOUR (5) per
    address, and open registration starts accounts at 0 credits unless STARTING_CREDITS says so."""
    with gateway(redis_server, starting_credits=GatewayConfig().starting_credits) as c:
        codes = [register(c, f"farm{i:02d}", ATTACKER).status_code for i in range(40)]
        assert codes == [201] * 5 + [429] * 35
        assert register(c, "alice", VICTIM).status_code == 201, "another address is not slowed"
        assert c.get("/v1/credits", headers=bearer(token(c, "alice", PASSWORD))).json()["credits"] == 0


@pytest.mark.parametrize("mode", ["closed", "admin-only"])
def test_registration_closed_or_for_admins_only(redis_server: RedisServer, mode: str) -> None:
    """Admin-only is the default: strangers get 403 and so do users; an admin makes accounts,
    unless registration is closed."""
    assert GatewayConfig().registration == "admin-only"
    with gateway(redis_server, registration=mode) as c:
        refused = register(c, "mallory")
        assert refused.status_code == 403 and mode in refused.json()["detail"]
        admin = bearer(token(c, "admin", ADMIN_PASSWORD))
        made = register(c, "alice", **admin)
        if mode == "closed":
            assert made.status_code == 403
        else:
            assert made.status_code == 201
            alice = bearer(token(c, "alice", PASSWORD))
            assert register(c, "carol", **alice).status_code == 403, "users cannot make accounts"


def test_the_admin_name_cannot_be_registered_and_a_takeover_revokes_its_access(
    redis_server: RedisServer,
) -> None:
    """The admin's name is reserved. An account of that name made before the admin existed (an
    attacker registering it first) is taken over at bootstrap: its keys and tokens stop."""
    with gateway(redis_server) as c:
        taken = register(c, "admin")
        assert taken.status_code == 409 and "reserved" in taken.json()["detail"]
    url = fresh_redis_url(redis_server)
    with gateway(redis_server, redis_url=SecretStr(url), admin_password_hash=None) as early:
        # no admin configured yet: the name is still reserved at registration
        assert register(early, "admin").status_code == 409
        # ... but one made some other way (an older version, a restore) is there
        r = redis.Redis.from_url(url)
        squatter_record = {
            "password": hash_password(PASSWORD),
            "role": "user",
            "created": "2026-01-01T00:00:00+00:00",
        }
        r.hset("kc:user:admin", mapping=squatter_record)
        r.close()
        squatter = bearer(token(early, "admin", PASSWORD))
        key = new_key(early, squatter)
    with gateway(redis_server, redis_url=SecretStr(url)) as booted:
        assert booted.get("/v1/me", headers=squatter).status_code == 401, "its token stopped"
        assert booted.get("/v1/me", headers={"X-API-Key": key}).status_code == 401, "its key stopped"
        assert form(booted, "admin", PASSWORD, VICTIM).status_code == 401, "its password stopped"
        admin = bearer(token(booted, "admin", ADMIN_PASSWORD))
        assert booted.get("/v1/me", headers=admin).json()["role"] == "admin"
        assert booted.get("/v1/keys", headers=admin).json() == []
        assert "role-changed" in [e["event"] for e in booted.get("/v1/me/audit", headers=admin).json()]


def test_a_restarted_gateway_keeps_the_admins_tokens(redis_server: RedisServer) -> None:
    """The bootstrap runs at every start (and in every replica): an unchanged admin password (plain,
    hashed with a new salt each time) must not revoke the admin's tokens."""
    url = SecretStr(fresh_redis_url(redis_server))
    plain = {"redis_url": url, "admin_password_hash": None, "admin_password": SecretStr(ADMIN_PASSWORD)}
    with gateway(redis_server, **plain) as first:
        admin = bearer(token(first, "admin", ADMIN_PASSWORD))
    with gateway(redis_server, **plain) as second:
        assert second.get("/v1/me", headers=admin).status_code == 200
    moved = {**plain, "admin_password": SecretStr("a new admin password from the Secret")}
    with gateway(redis_server, **moved) as third:
        assert third.get("/v1/me", headers=admin).status_code == 401, "a new password revokes tokens"


# -- keys, rate, revocation ---------------------------------------------------------------------


def test_api_keys_are_capped_and_many_keys_share_one_rate(redis_server: RedisServer) -> None:
    """N keys used to give N times the rate: the limit is the account's."""
    with gateway(redis_server, max_api_keys=3, rate_limit_per_minute=6) as c:
        assert register(c, "alice").status_code == 201
        alice = bearer(token(c, "alice", PASSWORD))
        keys = [new_key(c, alice) for _ in range(3)]
        capped = c.post("/v1/keys", json={"name": "one too many"}, headers=alice)
        assert capped.status_code == 409 and "revoke one" in capped.json()["detail"]
        # 16 requests in all: whichever minutes they fall in, one minute has more than 6
        codes = [c.get("/v1/me", headers={"X-API-Key": keys[i % 3]}).status_code for i in range(12)]
    assert 429 in codes


def test_disabling_an_account_stops_every_way_in_at_once(client: TestClient) -> None:
    assert register(client, "alice").status_code == 201
    alice = bearer(token(client, "alice", PASSWORD))
    key = new_key(client, alice)
    admin = bearer(token(client, "admin", ADMIN_PASSWORD))
    listed = client.get("/v1/admin/accounts", headers=admin).json()
    assert {"alice", "admin"} == {a["username"] for a in listed}
    assert client.get("/v1/admin/accounts", headers=alice).status_code == 403
    off = client.patch("/v1/admin/accounts/alice", json={"disabled": True}, headers=admin)
    assert off.status_code == 200 and off.json()["disabled"] is True
    assert client.get("/v1/me", headers=alice).status_code == 401
    assert client.get("/v1/me", headers={"X-API-Key": key}).status_code == 401
    assert client.get("/v1/me", headers={**VICTIM, **basic("alice", PASSWORD)}).status_code == 401
    assert form(client, "alice", PASSWORD, VICTIM).status_code == 401
    assert client.patch("/v1/admin/accounts/admin", json={"disabled": True}, headers=admin).status_code == 409
    on = client.patch("/v1/admin/accounts/alice", json={"disabled": False}, headers=admin)
    assert on.json()["disabled"] is False
    assert client.get("/v1/me", headers={"X-API-Key": key}).status_code == 200, "keys work again"
    assert client.get("/v1/me", headers=alice).status_code == 401, "tokens stay revoked"


def test_sign_out_and_a_new_password_revoke_every_token(client: TestClient) -> None:
    """A stolen token dies with sign-out or a password change."""
    assert register(client, "alice").status_code == 201
    stolen, mine = token(client, "alice", PASSWORD), token(client, "alice", PASSWORD)
    assert client.post("/v1/auth/sign-out", headers=bearer(mine)).status_code == 204
    assert client.get("/v1/me", headers=bearer(stolen)).status_code == 401
    fresh, stolen = token(client, "alice", PASSWORD), token(client, "alice", PASSWORD)
    wrong = {"current_password": "not my password", "new_password": "my brand new password"}
    assert client.post("/v1/me/password", json=wrong, headers=bearer(fresh)).status_code == 403
    change = {"current_password": PASSWORD, "new_password": "my brand new password"}
    assert client.post("/v1/me/password", json=change, headers=bearer(fresh)).status_code == 204
    assert client.get("/v1/me", headers=bearer(stolen)).status_code == 401
    assert form(client, "alice", PASSWORD, VICTIM).status_code == 401
    trail = client.get("/v1/me/audit", headers=bearer(token(client, "alice", "my brand new password"))).json()
    assert [e["event"] for e in trail][:3] == ["signed-in", "sign-in-failed", "password-changed"]


def test_the_audit_trail_is_the_accounts_and_the_admins_only(client: TestClient) -> None:
    for name in ("alice", "bob"):
        assert register(client, name).status_code == 201
    alice = bearer(token(client, "alice", PASSWORD))
    bob = bearer(token(client, "bob", PASSWORD))
    admin = bearer(token(client, "admin", ADMIN_PASSWORD))
    assert client.post("/v1/admin/credits/alice", json={"amount": 3}, headers=admin).status_code == 200
    assert client.get("/v1/admin/accounts/alice/audit", headers=bob).status_code == 403
    events = client.get("/v1/admin/accounts/alice/audit", headers=admin).json()
    assert events[0] == {**events[0], "event": "refilled", "amount": "3", "by": "admin"}
    assert events == client.get("/v1/me/audit", headers=alice).json()
    assert client.get("/v1/admin/accounts/nobody/audit", headers=admin).status_code == 404


# -- fetching -----------------------------------------------------------------------------------


def test_fetching_a_url_is_paid_for_first_and_limited_per_account(
    redis_server: RedisServer, digits_predictor: PredictorServer, s3_settings: S3Settings, bucket: str
) -> None:
    """An account without credits cannot make the gateway fetch anything, and one account's slow
    URLs hold at most FETCHES_PER_ACCOUNT fetches (2 here): the next is refused, not queued."""
    site = Site(delay=1.5)
    config = {
        "fetch_allowed_networks": ["127.0.0.0/8"],
        "fetches_per_account": 2,
        "predictors": {"digits": digits_predictor.url},
        "default_model": "digits",
        "starting_credits": 0,
        "images_uri": f"s3://{bucket}/images",
    }
    with gateway(redis_server, s3_settings, **config) as c:
        assert register(c, "alice").status_code == 201
        alice = bearer(token(c, "alice", PASSWORD))
        broke = c.post("/v1/classify", data={"url": f"{site.url}/1.png"}, headers=alice)
        assert broke.status_code == 402
        assert site.gets == 0, "nothing was fetched for an account that cannot pay"
        admin = bearer(token(c, "admin", ADMIN_PASSWORD))
        c.post("/v1/admin/credits/alice", json={"amount": 10}, headers=admin)
        started = threading.Barrier(3)

        def fetch(i: int) -> int:
            started.wait()
            return int(c.post("/v1/classify", data={"url": f"{site.url}/{i}.png"}, headers=alice).status_code)

        with ThreadPoolExecutor(3) as pool:
            codes = Counter(pool.map(fetch, range(3)))
        assert codes == Counter({200: 2, 429: 1})
        assert c.get("/v1/credits", headers=alice).json()["credits"] == 8, "the refused one was given back"
