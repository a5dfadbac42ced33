"""Start KServe's ModelServer with one ImageClassifier.

The ModelDeployment comes from `--spec FILE` (a whole resource or its spec, YAML or JSON) or from
the environment variable KUBECLASSIFY_MODEL_DEPLOYMENT (JSON), as the operator sets it. The model
is read from `--model_dir` (default /mnt/models, where KServe's storage initializer puts it) when
that folder has files, else fetched from spec.model.uri (s3:// or file://). It exits 2, with one
line that says why, when the spec or the model cannot be read.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import yaml
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kubeclassify.core import constants as c
from kubeclassify.core.asgi import DRAIN_FACTOR, drain, limited_receive
from kubeclassify.core.predictor import DESCRIBE_PATH
from kubeclassify.core.resources import ModelDeploymentSpec
from kubeclassify.core.settings import Settings
from kubeclassify.core.storage import ObjectStore
from kubeclassify.inference.preprocess import MAX_BYTES

ENV_SPEC = c.ENV_MODEL_DEPLOYMENT


def read_spec(path: str | None) -> tuple[ModelDeploymentSpec, str | None]:
    """The ModelDeployment spec, and its name when a whole resource was given."""
    if path:
        raw: Any = yaml.safe_load(Path(path).read_text())
    elif os.environ.get(ENV_SPEC):
        raw = json.loads(os.environ[ENV_SPEC])
    else:
        raise SystemExit(f"no ModelDeployment: pass --spec FILE or set {ENV_SPEC}")
    if isinstance(raw, dict) and "spec" in raw:
        return ModelDeploymentSpec.model_validate(raw["spec"]), (raw.get("metadata") or {}).get("name")
    return ModelDeploymentSpec.model_validate(raw), None


def _describe(app: Any, model: Any) -> None:
    """`GET /kubeclassify/v1/models/{name}`: what the gateway shows of a model (version, labels,
    description, input) — KServe's own metadata has no place for labels."""
    from starlette.responses import JSONResponse

    @app.get(DESCRIBE_PATH, include_in_schema=False)
    async def describe(name: str) -> Any:
        if name != model.name or not model.ready:
            return JSONResponse({"error": f"model {name} is not served here or not ready"}, status_code=404)
        return {
            "name": model.name,
            "version": model.version,
            "labels": model.labels,
            "description": model.spec.model.description,
            "input": model.spec.input.to_k8s(),
        }


class BodyTooLarge(HTTPException):
    """A request body over the predictor's limit: 413. An HTTPException, so that FastAPI passes it on
    as it is when it comes up while FastAPI parses a body."""

    def __init__(self, size: str, limit: int) -> None:
        super().__init__(413, f"request body is {size} bytes; the limit is {limit}")


class BodyLimit:
    """Refuse bodies over `max_bytes` (413): from their Content-Length before reading them, else (a
    chunked body) as soon as the bytes received pass the limit, before the rest is read. Add it last,
    as the outermost middleware, so that the others read through it; `install` does."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    @classmethod
    def install(cls, app: Any, max_bytes: int) -> None:
        app.add_exception_handler(BodyTooLarge, lambda request, exc: _refusal(exc))
        app.add_middleware(cls, max_bytes=max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            if int(length) <= DRAIN_FACTOR * self.max_bytes:
                await drain(receive, int(length))
            await _refusal(BodyTooLarge(length.decode(), self.max_bytes))(scope, receive, send)
            return
        started = False
        limited = limited_receive(
            receive, self.max_bytes, lambda: BodyTooLarge(f"over {self.max_bytes}", self.max_bytes)
        )

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, watched_send)
        except BodyTooLarge as e:  # read by a middleware, outside the routes' exception handlers
            if started:
                raise
            await _refusal(e)(scope, receive, send)


def _refusal(exc: BodyTooLarge) -> JSONResponse:
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code)


def non_utf8_binary_bytes(body: bytes, header_length: int) -> str | None:
    """The name of a BYTES input whose binary-extension elements are not UTF-8, or None.

    KServe 0.21 turns such elements into a 500 (and puts the bytes in its error message)."""
    try:
        header = json.loads(body[:header_length])
    except ValueError:
        return None  # KServe answers malformed headers itself
    offset = header_length
    for tensor in header.get("inputs") or []:
        size = int((tensor.get("parameters") or {}).get("binary_data_size") or 0)
        if not size:
            continue
        section, offset = body[offset : offset + size], offset + size
        if tensor.get("datatype") != "BYTES":
            continue
        pos = 0
        while pos + 4 <= len(section):
            n = int.from_bytes(section[pos : pos + 4], "little")
            try:
                section[pos + 4 : pos + 4 + n].decode("utf-8")
            except UnicodeDecodeError:
                return str(tensor.get("name"))
            pos += 4 + n
    return None


class BinaryBytesCheck:
    """Answer 400, with what to send instead, for raw image bytes in binary-extension BYTES (V2
    requests with an `Inference-Header-Content-Length`); other requests pass untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"inference-header-content-length", b"")
        if scope["type"] != "http" or scope["method"] != "POST" or not length.isdigit():
            await self.app(scope, receive, send)
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        name = non_utf8_binary_bytes(body, int(length))
        if name is not None:
            error = (
                f"input {name!r}: BYTES sent with the binary tensor extension must be UTF-8 text; send"
                " base64-encoded images in a JSON request, or the raw image to the V1 endpoint with an"
                " image Content-Type"
            )
            await JSONResponse({"error": error}, status_code=400)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    from kserve import model_server
    from kserve.model_server import ModelServer

    parser = argparse.ArgumentParser(
        prog=prog or "python -m kubeclassify.inference.predictor",
        parents=[model_server.parser],
        conflict_handler="resolve",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--spec", help=f"a ModelDeployment as YAML or JSON (default: ${ENV_SPEC})")
    parser.add_argument(
        "--model_dir",
        type=Path,
        default=Path("/mnt/models"),
        help="where the model is, if there (default: %(default)s)",
    )
    parser.add_argument("--top_k", type=int, default=5, help="labels in each answer (default: %(default)s)")
    parser.add_argument(
        "--max_body_bytes",
        type=int,
        default=4 * MAX_BYTES,
        help="largest request body (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    from kubeclassify.inference.predictor.model import ImageClassifier, ModelMissingError

    try:
        spec, resource_name = read_spec(args.spec)
        name = resource_name if args.model_name in (None, "model") and resource_name else args.model_name
        model = ImageClassifier(
            name, spec, model_dir=args.model_dir, store=ObjectStore(Settings().s3), top_k=args.top_k
        )
        model.load()
    except (OSError, ValueError, yaml.YAMLError, ModelMissingError) as e:  # ValueError: pydantic's too
        parser.exit(2, f"{parser.prog}: cannot serve: {e}\n")
    _describe(model_server.app, model)
    model_server.app.add_middleware(BinaryBytesCheck)
    BodyLimit.install(model_server.app, args.max_body_bytes)  # last: the outermost middleware
    ModelServer(
        http_port=args.http_port, grpc_port=args.grpc_port, enable_grpc=args.enable_grpc, workers=1
    ).start([model])
