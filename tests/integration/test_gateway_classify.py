"""`POST /v1/classify` against a real redis-server, a real SeaweedFS and the real predictor serving
the digits model: uploads and URLs, credits, the stored original and record, and bad inputs."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient
from harness.gateway import TOKEN_SECRET, digit_png, fresh_redis_url, predicted_label, sign_up
from pydantic import SecretStr

from kubeclassify.cli.services import PredictorServer, RedisServer
from kubeclassify.core.settings import S3Settings
from kubeclassify.core.storage import ObjectStore
from kubeclassify.gateway.app import create_app
from kubeclassify.gateway.config import GatewayConfig, GatewaySettings


@pytest.fixture
def gateway(
    redis_server: RedisServer, s3_settings: S3Settings, bucket: str, digits_predictor: PredictorServer
) -> Iterator[tuple[TestClient, str, str]]:
    config = GatewayConfig(
        registration="open",
        redis_url=SecretStr(fresh_redis_url(redis_server)),
        token_secret=SecretStr(TOKEN_SECRET),
        starting_credits=3,
        images_uri=f"s3://{bucket}/images",
        predictors={"digits": digits_predictor.url},
        default_model="digits",
        max_upload_bytes=64 * 1024,
        fetch_allowed_networks=["127.0.0.0/8"],
    )
    with TestClient(create_app(GatewaySettings(gateway=config, s3=s3_settings))) as client:
        yield client, sign_up(client), bucket


def test_an_upload_is_classified_stored_recorded_and_paid_for(
    gateway: tuple[TestClient, str, str], store: ObjectStore, digits_predictor: PredictorServer
) -> None:
    client, token, bucket = gateway
    png = digit_png(1700)[0]
    label = predicted_label(digits_predictor, png)
    resp = client.post(
        "/v1/classify",
        files={"file": ("seven.png", png, "image/png")},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["label"] == label and body["model_name"] == "digits" and body["model_version"]
    assert len(body["top_k"]) == 5 and body["top_k"][0]["label"] == label
    assert client.get("/v1/credits", headers={"Authorization": f"Bearer {token}"}).json()["credits"] == 2
    stored = [o.uri for o in store.iter_objects(f"s3://{bucket}/images/alice/")]
    assert stored == [f"s3://{bucket}/images/alice/{body['uid']}.png"]
    assert store.read(stored[0]) == png


def test_a_url_is_fetched_through_the_guard(
    gateway: tuple[TestClient, str, str], digits_predictor: PredictorServer
) -> None:
    client, token, _ = gateway
    png = digit_png(1701)[0]
    label = predicted_label(digits_predictor, png)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(png)))
            self.end_headers()
            self.wfile.write(png)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/digit.png"
        resp = client.post("/v1/classify", data={"url": url}, headers={"Authorization": f"Bearer {token}"})
    finally:
        server.shutdown()
    assert resp.status_code == 200 and resp.json()["label"] == label


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x.png",
        "http://2130706433/x.png",
        "http://0x7f000001/x.png",
        "http://10.0.0.1/x.png",
    ],
)
def test_private_addresses_are_refused_and_cost_nothing(
    url: str,
    redis_server: RedisServer,
    s3_settings: S3Settings,
    bucket: str,
    digits_predictor: PredictorServer,
) -> None:
    config = GatewayConfig(
        registration="open",
        starting_credits=100,
        redis_url=SecretStr(fresh_redis_url(redis_server)),
        token_secret=SecretStr(TOKEN_SECRET),
        predictors={"digits": digits_predictor.url},
        default_model="digits",
        images_uri=f"s3://{bucket}/images",
    )  # no network allowed besides public ones
    with TestClient(create_app(GatewaySettings(gateway=config, s3=s3_settings))) as client:
        name = "u" + secrets.token_hex(4)
        token = sign_up(client, name)
        resp = client.post("/v1/classify", data={"url": url}, headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 400 and "not allowed" in resp.json()["detail"]
        assert (
            client.get("/v1/credits", headers={"Authorization": f"Bearer {token}"}).json()["credits"] == 100
        )


def test_bad_inputs_cost_nothing(gateway: tuple[TestClient, str, str]) -> None:
    client, token, _ = gateway
    auth = {"Authorization": f"Bearer {token}"}
    png, _ = digit_png(1702)
    cases = [
        (dict(files={"file": ("a.txt", b"=HYPERLINK(1) is text", "text/plain")}), 415),
        (dict(files={"file": ("big.png", png + b"\0" * (65 * 1024), "image/png")}), 413),
        (dict(files={"file": ("x.png", png, "image/png")}, data={"model": "nope"}), 404),
        (dict(data={}), 422),
        (dict(files={"file": ("x.png", png, "image/png")}, data={"url": "http://example.com/x.png"}), 422),
        (dict(files={"file": ("corrupt.png", png[:40], "image/png")}), 422),  # the predictor refuses it
    ]
    for kwargs, status in cases:
        resp = client.post("/v1/classify", headers=auth, **kwargs)  # type: ignore[arg-type]
        assert resp.status_code == status, (kwargs, resp.text)
        assert resp.headers["content-type"] == "application/problem+json"
    assert client.get("/v1/credits", headers=auth).json()["credits"] == 3
    assert client.post("/v1/classify", files={"file": ("x.png", png, "image/png")}).status_code == 401
    huge = client.post(
        "/v1/classify", headers=auth, files={"file": ("huge.png", png + b"\0" * (200 * 1024), "image/png")}
    )
    assert huge.status_code == 413 and "request body" in huge.json()["detail"], "refused before it is read"


def test_a_chunked_upload_over_the_limit_is_refused(gateway: tuple[TestClient, str, str]) -> None:
    """No Content-Length to refuse up front: the body is counted as it arrives (how little is read
    is checked in tests/unit/test_middleware.py, where the arrival of each chunk can be seen)."""
    client, token, _ = gateway
    png, _ = digit_png(1704)
    head = b'--b0\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
    body = head + b"Content-Type: image/png\r\n\r\n" + png + b"\0" * (200 * 1024) + b"\r\n--b0--\r\n"
    resp = client.post(
        "/v1/classify",
        content=iter([body]),  # sent chunked
        headers={"Authorization": f"Bearer {token}", "Content-Type": "multipart/form-data; boundary=b0"},
    )
    assert resp.status_code == 413 and "request body" in resp.json()["detail"], resp.text
    assert client.get("/v1/credits", headers={"Authorization": f"Bearer {token}"}).json()["credits"] == 3


def test_no_credits_no_classification(gateway: tuple[TestClient, str, str], store: ObjectStore) -> None:
    client, token, bucket = gateway
    auth = {"Authorization": f"Bearer {token}"}
    png, _ = digit_png(1703)
    codes = [
        client.post("/v1/classify", files={"file": ("x.png", png, "image/png")}, headers=auth).status_code
        for _ in range(5)
    ]
    assert codes == [200, 200, 200, 402, 402]
    assert len(list(store.iter_objects(f"s3://{bucket}/images/alice/"))) == 3
    assert (
        json.loads(
            client.post("/v1/classify", files={"file": ("x.png", png, "image/png")}, headers=auth).text
        )["status"]
        == 402
    )


def test_images_are_listed_downloaded_counted_and_deleted_by_their_owner_only(
    gateway: tuple[TestClient, str, str], store: ObjectStore
) -> None:
    client, alice, bucket = gateway
    auth = {"Authorization": f"Bearer {alice}"}
    uploads = [digit_png(i) for i in (1704, 1705, 1706)]
    uids = []
    for png, _ in uploads:
        resp = client.post("/v1/classify", files={"file": ("d.png", png, "image/png")}, headers=auth)
        uids.append(resp.json()["uid"])
    listed = client.get("/v1/images", headers=auth).json()
    assert listed["total"] == 3 and [i["uid"] for i in listed["items"]] == uids[::-1], "newest first"
    assert "uri" not in listed["items"][0]
    second = client.get("/v1/images", params={"offset": 1, "limit": 1}, headers=auth).json()
    assert [i["uid"] for i in second["items"]] == [uids[1]]
    label = listed["items"][0]["label"]
    same = client.get("/v1/images", params={"category": label}, headers=auth).json()
    assert all(i["label"] == label for i in same["items"]) and same["total"] >= 1
    counts = client.get("/v1/categories", headers=auth).json()
    assert sum(counts.values()) == 3
    original = client.get(f"/v1/images/{uids[0]}/content", headers=auth)
    assert original.content == uploads[0][0] and original.headers["content-type"] == "image/png"

    other = {"Authorization": f"Bearer {sign_up(client, 'mallory')}"}
    assert client.get("/v1/images", headers=other).json()["total"] == 0
    for method, path in [
        ("get", f"/v1/images/{uids[0]}"),
        ("get", f"/v1/images/{uids[0]}/content"),
        ("delete", f"/v1/images/{uids[0]}"),
    ]:
        assert getattr(client, method)(path, headers=other).status_code == 404, path

    assert client.delete(f"/v1/images/{uids[0]}", headers=auth).status_code == 204
    assert client.get(f"/v1/images/{uids[0]}", headers=auth).status_code == 404
    assert not store.exists(f"s3://{bucket}/images/alice/{uids[0]}.png")
    assert sum(client.get("/v1/categories", headers=auth).json().values()) == 2
    assert client.get("/v1/images", params={"limit": 500}, headers=auth).status_code == 422


def test_fifty_concurrent_classifications_against_twenty_credits(
    redis_server: RedisServer, s3_settings: S3Settings, bucket: str, digits_predictor: PredictorServer
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    config = GatewayConfig(
        registration="open",
        redis_url=SecretStr(fresh_redis_url(redis_server)),
        token_secret=SecretStr(TOKEN_SECRET),
        starting_credits=20,
        images_uri=f"s3://{bucket}/images",
        predictors={"digits": digits_predictor.url},
        default_model="digits",
    )
    png, _ = digit_png(1707)
    with TestClient(create_app(GatewaySettings(gateway=config, s3=s3_settings))) as client:
        name = "r" + secrets.token_hex(4)
        token = sign_up(client, name)
        auth = {"Authorization": f"Bearer {token}"}

        def one(_: int) -> int:
            return client.post(
                "/v1/classify", files={"file": ("d.png", png, "image/png")}, headers=auth
            ).status_code

        with ThreadPoolExecutor(50) as pool:
            codes = list(pool.map(one, range(50)))
        assert (codes.count(200), codes.count(402), len(codes)) == (20, 30, 50)
        assert client.get("/v1/credits", headers=auth).json()["credits"] == 0
        assert client.get("/v1/images", headers=auth).json()["total"] == 20
        metrics = client.get("/metrics").text
    assert 'kubeclassify_gateway_requests_total{method="POST",route="/v1/classify",status="402"}' in metrics
    assert "kubeclassify_gateway_credits_spent_total" in metrics
    assert "kubeclassify_gateway_classifications_total{label=" in metrics


def test_models_are_listed_with_version_labels_and_readiness(
    redis_server: RedisServer, s3_settings: S3Settings, bucket: str, digits_predictor: PredictorServer
) -> None:
    from kubeclassify.cli.processes import free_port

    config = GatewayConfig(
        registration="open",
        redis_url=SecretStr(fresh_redis_url(redis_server)),
        token_secret=SecretStr(TOKEN_SECRET),
        predictors={"digits": digits_predictor.url, "gone": f"http://127.0.0.1:{free_port()}"},
        default_model="digits",
        images_uri=f"s3://{bucket}/images",
    )
    with TestClient(create_app(GatewaySettings(gateway=config, s3=s3_settings))) as client:
        name = "m" + secrets.token_hex(4)
        token = sign_up(client, name)
        listed = client.get("/v1/models", headers={"Authorization": f"Bearer {token}"})
        assert client.get("/v1/models").status_code == 401
    digits, gone = listed.json()
    assert (digits["name"], digits["ready"], digits["default"]) == ("digits", True, True)
    assert digits["labels"] == [str(i) for i in range(10)] and digits["version"]
    assert (gone["name"], gone["ready"], gone["default"], gone["version"]) == ("gone", False, False, None)
