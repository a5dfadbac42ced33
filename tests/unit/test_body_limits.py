"""Body limits on a body without a Content-Length (a chunked upload), in the gateway and in the
predictor: refused once the bytes received pass the limit, with the rest never read. Driven at the
ASGI level, so the test sees each chunk the server would hand the application."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import pytest
from fastapi import FastAPI, File, Request, UploadFile
from pydantic import BaseModel

from kubeclassify.gateway import errors
from kubeclassify.gateway.middleware import PerRequest
from kubeclassify.inference.predictor.server import BinaryBytesCheck, BodyLimit

CHUNK = 64 * 1024
LIMIT = 4 * CHUNK


def _gateway() -> Any:
    app = FastAPI()
    errors.install(app)

    @app.post("/upload")
    async def upload(file: Annotated[UploadFile, File()]) -> dict[str, int]:
        return {"size": len(await file.read())}

    return PerRequest(app, body_limit=LIMIT)


class Doc(BaseModel):
    text: str


def _predictor() -> Any:
    app = FastAPI()

    @app.post("/upload")  # reads the body itself, as KServe's V1 predict does
    async def upload(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @app.post("/doc")  # a body FastAPI parses, as KServe's V2 infer does
    async def doc(body: Doc) -> dict[str, int]:
        return {"size": len(body.text)}

    app.add_middleware(BinaryBytesCheck)  # reads V2 binary bodies itself
    BodyLimit.install(app, LIMIT)
    return app


def _post(
    app: Any, parts: list[bytes], headers: dict[str, str], path: str = "/upload"
) -> tuple[int, dict[str, Any], int]:
    """Status, JSON answer and how many body chunks the application asked for."""
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope = {"type": "http", "method": "POST", "path": path, "headers": raw, "query_string": b""}
    scope |= {"http_version": "1.1", "scheme": "http", "server": ("t", 80), "client": ("c", 1)}
    asked = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        if asked > len(parts):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": parts[asked - 1], "more_body": asked < len(parts)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body), asked


def _form(chunks: int) -> tuple[list[bytes], dict[str, str]]:
    head = b'--b0\r\nContent-Disposition: form-data; name="file"; filename="x.bin"\r\n\r\n'
    return [head] + [b"\0" * CHUNK] * chunks + [b"\r\n--b0--\r\n"], {
        "content-type": "multipart/form-data; boundary=b0"
    }


def _refusal(answer: dict[str, Any]) -> str:
    return str(answer.get("detail") or answer.get("error"))


@pytest.mark.parametrize("make", [_gateway, _predictor])
def test_a_chunked_body_over_the_limit_is_refused_without_reading_the_rest(make: Any) -> None:
    parts, headers = _form(1000)  # 64 MiB offered
    status, answer, asked = _post(make(), parts, headers)
    assert status == 413 and f"over {LIMIT}" in _refusal(answer), answer
    assert asked <= 6, f"{asked} chunks read for a limit of four"


@pytest.mark.parametrize("make", [_gateway, _predictor])
def test_a_chunked_body_within_the_limit_is_read_whole(make: Any) -> None:
    status, answer, _ = _post(make(), *_form(3))
    assert status == 200 and answer["size"] >= 3 * CHUNK


@pytest.mark.parametrize("make", [_gateway, _predictor])
def test_a_declared_length_over_the_limit_is_refused_before_any_reading(make: Any) -> None:
    parts, headers = _form(1000)
    status, answer, asked = _post(make(), parts, {**headers, "content-length": str(1000 * CHUNK)})
    assert status == 413 and str(LIMIT) in _refusal(answer) and asked == 0


@pytest.mark.parametrize("make", [_gateway, _predictor])
def test_a_declared_length_a_little_over_the_limit_is_read_before_the_refusal(make: Any) -> None:
    """The server closes the connection after answering; a client still sending a body it was not
    done with gets a reset instead of the 413 (a broken pipe in urllib). A body of a sane size is
    read and dropped first, so the client reads the answer."""
    parts, headers = _form(5)
    size = sum(map(len, parts))
    status, answer, asked = _post(make(), parts, {**headers, "content-length": str(size)})
    assert status == 413 and str(LIMIT) in _refusal(answer) and asked == len(parts)


@pytest.mark.parametrize(
    ("path", "headers"),
    [("/doc", {"content-type": "application/json"}), ("/upload", {"inference-header-content-length": "9"})],
)
def test_the_predictor_refuses_bodies_read_by_fastapi_or_by_a_middleware(
    path: str, headers: dict[str, str]
) -> None:
    parts = [b'{"text": "'] + [b"a" * CHUNK] * 1000 + [b'"}']
    status, answer, asked = _post(_predictor(), parts, headers, path)
    assert status == 413 and answer == {"error": f"request body is over {LIMIT} bytes; the limit is {LIMIT}"}
    assert asked <= 6
