"""What the gateway's tests share: a fresh Redis database, a token secret, signing up, digit images."""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image
from redis.asyncio import Redis

from kubeclassify.cli.services import PredictorServer, RedisServer
from kubeclassify.core.settings import S3Settings

if TYPE_CHECKING:
    from kubeclassify.gateway.config import GatewaySettings

TOKEN_SECRET = "a-test-token-secret-of-forty-characters!!"
PASSWORD = "a long enough password"


def fresh_redis_url(redis_server: RedisServer, db: int | None = None) -> str:
    """The URL of a Redis database of the test's own (1-15, random unless given), emptied first."""
    url = redis_server.url.rsplit("/", 1)[0] + f"/{db if db is not None else secrets.randbelow(15) + 1}"

    async def flush() -> None:
        r = Redis.from_url(url)
        await r.flushdb()
        await r.aclose()

    asyncio.run(flush())
    return url


def local_settings(
    redis_server: RedisServer, s3: S3Settings, bucket: str, predictor: PredictorServer, **config: Any
) -> GatewaySettings:
    """A gateway with the local batch backend on a fresh Redis database, its images and batches in
    `bucket`, serving `predictor` as the default model `digits`; `config` overrides settings."""
    from pydantic import SecretStr

    from kubeclassify.gateway.config import GatewayConfig, GatewaySettings

    gateway = GatewayConfig(
        registration="open",
        redis_url=SecretStr(fresh_redis_url(redis_server)),
        token_secret=SecretStr(TOKEN_SECRET),
        starting_credits=20,
        images_uri=f"s3://{bucket}/images",
        batches_uri=f"s3://{bucket}/batches",
        predictors={"digits": predictor.url},
        default_model="digits",
        **config,
    )
    return GatewaySettings(gateway=gateway, s3=s3)


def sign_up(client: TestClient, username: str = "alice", password: str = PASSWORD) -> str:
    """Register `username` and sign in; the access token."""
    assert client.post("/v1/accounts", json={"username": username, "password": password}).status_code == 201
    resp = client.post("/v1/auth/token", data={"username": username, "password": password})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


def digit_png(index: int) -> tuple[bytes, str]:
    """Digit `index` of scikit-learn's digits as an 8x8 PNG, and its label."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = (digits.images[index] * (255.0 / 16.0)).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue(), str(digits.target[index])


def predicted_label(predictor: PredictorServer, png: bytes) -> str:
    """What the predictor itself answers for `png`: the label a gateway result must carry. Gateway
    tests compare with this, not with the digit's true label: the test model is trained afresh each
    run and is not the same to the bit, so a borderline digit (1765, a 3) is read as a 5 by some runs'
    models. How right the model is belongs to the training and predictor tests."""
    url = f"{predictor.url}/v1/models/{predictor.name}:predict"
    request = urllib.request.Request(url, data=png, headers={"Content-Type": "image/png"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as resp:
        return str(json.loads(resp.read())["predictions"][0]["label"])


def gateway_env(
    redis_url: str, s3: S3Settings, images_uri: str, predictor: PredictorServer, **settings: str
) -> dict[str, str]:
    """`KUBECLASSIFY_*` variables for a gateway process serving `predictor` as the default model;
    `settings` add or override gateway settings by name (`rate_limit_per_minute="1000"`)."""
    assert s3.endpoint_url and s3.access_key_id and s3.secret_access_key
    env = {
        "KUBECLASSIFY_ENVIRONMENT": "development",
        "KUBECLASSIFY_S3__ENDPOINT_URL": s3.endpoint_url,
        "KUBECLASSIFY_S3__ACCESS_KEY_ID": s3.access_key_id,
        "KUBECLASSIFY_S3__SECRET_ACCESS_KEY": s3.secret_access_key.get_secret_value(),
        "KUBECLASSIFY_GATEWAY__REDIS_URL": redis_url,
        "KUBECLASSIFY_GATEWAY__TOKEN_SECRET": TOKEN_SECRET,
        "KUBECLASSIFY_GATEWAY__IMAGES_URI": images_uri,
        "KUBECLASSIFY_GATEWAY__PREDICTORS": json.dumps({predictor.name: predictor.url}),
        "KUBECLASSIFY_GATEWAY__DEFAULT_MODEL": predictor.name,
        "KUBECLASSIFY_GATEWAY__REGISTRATION": "open",
        "KUBECLASSIFY_GATEWAY__STARTING_CREDITS": "100",
    }
    return env | {f"KUBECLASSIFY_GATEWAY__{k.upper()}": v for k, v in settings.items()}


class Site:
    """A local web server: digit PNGs at /<index>.png (after `delay` seconds; the `held` ones once
    `release` is set), and a webhook receiver."""

    def __init__(self, delay: float = 0.0, held: frozenset[str] = frozenset()) -> None:
        self.delay = delay
        self.held = held  # names answered only once `release` is set (or after a minute)
        self.release = threading.Event()
        self.gets = 0  # GET requests received
        self.hooks: list[tuple[dict[str, str], bytes]] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                site.gets += 1
                time.sleep(site.delay)
                name = self.path.strip("/")
                if name in site.held:
                    site.release.wait(60)
                if name == "text.png":
                    body, kind = b"this is not an image", "image/png"
                elif name.endswith(".png") and name[:-4].isdigit():
                    body, kind = digit_png(int(name[:-4]))[0], "image/png"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                site.hooks.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def csv(self, names: list[str]) -> bytes:
        return ("url,note\n" + "".join(f"{self.url}/{n},n{i}\n" for i, n in enumerate(names))).encode()
