"""Classify one image: an upload or a URL, sent as encoded bytes to the model's predictor while the
original is stored; one image costs `IMAGE_COST` credits, taken before and given back on failure."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from typing import Annotated, Any

import aiohttp
from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from pydantic import BaseModel

from kubeclassify.core.fetch import BlockedAddress, FetchError, FetchPolicy, fetch
from kubeclassify.core.sources import owner_prefix
from kubeclassify.core.storage import ObjectStore, StorageError
from kubeclassify.gateway import metrics
from kubeclassify.gateway.catalog import NotReady
from kubeclassify.gateway.deps import AccountsDep, ConfigDep, CurrentUser
from kubeclassify.gateway.errors import SIGNED_IN, problems
from kubeclassify.gateway.images import EXTENSIONS, ImageRecord, Images, image_type, now

router = APIRouter(prefix="/v1", tags=["classify"], responses=SIGNED_IN)


class LabelScore(BaseModel):
    label: str
    score: float


class Prediction(BaseModel):
    uid: str
    label: str
    score: float
    top_k: list[LabelScore]
    model_name: str
    model_version: str


@router.post(
    "/classify",
    response_model=Prediction,
    summary="Classify one image (upload or URL)",
    responses=problems(400, 402, 404, 413, 415),
)
async def classify(
    request: Request,
    user: CurrentUser,
    accounts: AccountsDep,
    config: ConfigDep,
    file: Annotated[UploadFile | None, File(description="The image.")] = None,
    url: Annotated[str | None, Form(max_length=2048, description="Or an http(s) URL of the image.")] = None,
    model: Annotated[
        str | None, Form(max_length=63, description="A model's name (default: the default).")
    ] = None,
) -> Any:
    """Classify one image: an upload (`file`) or an http(s) `url` the gateway fetches (private
    addresses are refused). The credits are taken first and given back if anything fails; the
    original is kept under my images and the record is listed under /v1/images."""
    if (file is None) == (url is None):
        raise HTTPException(422, "send exactly one of file and url")
    name = model or config.default_model
    if name is None:
        raise HTTPException(404, "no model named and no default model")
    try:
        base = await request.app.state.catalog.resolve(name)
    except NotReady as e:
        raise HTTPException(503, f"{e}; try again later") from e
    if base is None:
        raise HTTPException(404, f"no model {name!r}")
    data, filename = await _image(file, url, config.max_upload_bytes, config.fetch_allowed_networks)
    media_type = image_type(data)
    if media_type is None:
        raise HTTPException(415, "not an image: send a JPEG, PNG, GIF, BMP, TIFF or WebP")
    if await accounts.debit(user.username, config.image_cost) is None:
        raise HTTPException(402, f"not enough credits: an image costs {config.image_cost}")
    uid = secrets.token_hex(12)
    uri = owner_prefix(config.images_uri, user.username) + uid + EXTENSIONS[media_type]
    store: ObjectStore = request.app.state.store
    client: aiohttp.ClientSession = request.app.state.http
    predicted, stored = await asyncio.gather(
        _predict(client, base, name, data, media_type, config.predictor_timeout),
        asyncio.to_thread(_store, store, uri, data, media_type),
        return_exceptions=True,
    )
    if isinstance(predicted, BaseException) or isinstance(stored, BaseException):
        await accounts.credit(user.username, config.image_cost)  # nothing was classified
        if not isinstance(stored, BaseException):
            with contextlib.suppress(StorageError):
                await asyncio.to_thread(store.delete, uri)
        failure = predicted if isinstance(predicted, BaseException) else stored
        if isinstance(failure, HTTPException):
            raise failure
        raise HTTPException(503, "the image could not be stored; try again") from failure
    answer: dict[str, Any] = predicted
    top = answer["predictions"][0]
    record = ImageRecord(
        uid=uid,
        owner=user.username,
        label=str(top["label"]),
        score=float(top["score"]),
        top_k=[{"label": str(t["label"]), "score": float(t["score"])} for t in top["top_k"]],
        model_name=str(answer.get("model_name") or name),
        model_version=str(answer.get("model_version") or ""),
        time=now(),
        uri=uri,
        filename=filename,
        content_type=media_type,
    )
    await Images(accounts.redis).add(record)
    metrics.CREDITS.inc(config.image_cost)
    metrics.CLASSIFIED.labels(record.model_name, record.label).inc()
    return {k: v for k, v in record.public().items() if k in Prediction.model_fields}


async def _image(
    file: UploadFile | None, url: str | None, limit: int, networks: list[str]
) -> tuple[bytes, str]:
    if file is not None:
        data = await file.read(limit + 1)
        if len(data) > limit:
            raise HTTPException(413, f"the image is larger than {limit} bytes")
        return data, (file.filename or "upload")[:255]
    assert url is not None
    policy = FetchPolicy.allowing(*networks, max_bytes=limit, timeout=20.0)
    try:
        data = await asyncio.to_thread(fetch, url, policy)
    except BlockedAddress as e:
        raise HTTPException(400, f"that URL is not allowed: {e}") from e
    except FetchError as e:
        raise HTTPException(400, f"the image could not be fetched: {e}") from e
    return data, url.rsplit("/", 1)[-1].split("?", 1)[0][:255] or "image"


async def _predict(
    client: aiohttp.ClientSession, base: str, name: str, data: bytes, media_type: str, timeout: float
) -> dict[str, Any]:
    """The predictor's V1 answer for the raw image bytes (never a decoded tensor on the wire)."""
    try:
        async with client.post(
            f"{base.rstrip('/')}/v1/models/{name}:predict",
            data=data,
            headers={"Content-Type": media_type},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            status, text = resp.status, await resp.text()
    except (aiohttp.ClientError, TimeoutError) as e:
        raise HTTPException(503, f"the model {name!r} is not answering; try again") from e
    if 400 <= status < 500 and status != 404:
        raise HTTPException(422, f"the model could not read the image: {text[:300]}")
    if status != 200:
        raise HTTPException(503, f"the model {name!r} is not answering (HTTP {status}); try again")
    answer: dict[str, Any] = json.loads(text)
    return answer


def _store(store: ObjectStore, uri: str, data: bytes, media_type: str) -> None:
    store.write(uri, data, content_type=media_type)
