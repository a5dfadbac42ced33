"""Classify one image: an upload or a URL, sent as encoded bytes to the model's predictor while the
original is stored; one image costs `IMAGE_COST` credits, taken before and given back on failure."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Annotated, Any

import aiohttp
from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile

from kubeclassify.core import predictor
from kubeclassify.core.fetch import BlockedAddress, FetchError, FetchPolicy
from kubeclassify.core.sources import owner_prefix
from kubeclassify.core.storage import ObjectStore, StorageError
from kubeclassify.gateway import metrics
from kubeclassify.gateway.catalog import NotReady
from kubeclassify.gateway.config import GatewayConfig
from kubeclassify.gateway.deps import (
    AccountsDep,
    CatalogDep,
    ConfigDep,
    CurrentUser,
    FetchesDep,
    HttpDep,
    ImagesDep,
    StoreDep,
)
from kubeclassify.gateway.errors import SIGNED_IN, problems
from kubeclassify.gateway.fetches import UrlFetches
from kubeclassify.gateway.images import EXTENSIONS, ImageRecord, now
from kubeclassify.gateway.schemas import Prediction

router = APIRouter(prefix="/v1", tags=["classify"], responses=SIGNED_IN)
FETCH_SECONDS = 20.0  # the whole exchange with an image URL's server, redirects included


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
    store: StoreDep,
    catalog: CatalogDep,
    images: ImagesDep,
    http: HttpDep,
    fetches: FetchesDep,
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
        base = await catalog.resolve(name)
    except NotReady as e:
        raise HTTPException(503, f"{e}; try again later") from e
    if base is None:
        raise HTTPException(404, f"no model {name!r}")
    # Paid first, so that fetching a URL is never free; given back if no prediction comes of it.
    if await accounts.debit(user.username, config.image_cost) is None:
        raise HTTPException(402, f"not enough credits: an image costs {config.image_cost}")
    uid = secrets.token_hex(12)
    stored_at: str | None = None  # the image's object, once it is there to delete
    try:
        if file is not None:
            data, filename = await _upload(file, config.max_upload_bytes)
        else:
            assert url is not None
            data, filename = await _fetched(fetches, user.username, url, config)
        media_type = predictor.image_type(data)
        if media_type is None:
            raise HTTPException(415, "not an image: send a JPEG, PNG, GIF, BMP, TIFF or WebP")
        uri = owner_prefix(config.images_uri, user.username) + uid + EXTENSIONS[media_type]
        predicted, stored = await asyncio.gather(
            _predict(http, base, name, data, media_type, config.predictor_timeout),
            asyncio.to_thread(_store, store, uri, data, media_type),
            return_exceptions=True,
        )
        if isinstance(stored, BaseException):
            raise HTTPException(503, "the image could not be stored; try again") from stored
        stored_at = uri
        if isinstance(predicted, BaseException):
            raise predicted
    except Exception:
        await accounts.credit(user.username, config.image_cost)  # nothing was classified
        if stored_at is not None:
            with contextlib.suppress(StorageError):
                await asyncio.to_thread(store.delete, stored_at)
        raise
    answer: predictor.Prediction = predicted
    record = ImageRecord(
        uid=uid,
        owner=user.username,
        label=answer.label,
        score=answer.score,
        top_k=[{"label": label, "score": score} for label, score in answer.top_k],
        model_name=answer.model_name,
        model_version=answer.model_version,
        time=now(),
        uri=uri,
        filename=filename,
        content_type=media_type,
    )
    await images.add(record)
    metrics.CREDITS.inc(config.image_cost)
    metrics.CLASSIFIED.labels(record.model_name, record.label).inc()
    return {k: v for k, v in record.public().items() if k in Prediction.model_fields}


async def _upload(file: UploadFile, limit: int) -> tuple[bytes, str]:
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"the image is larger than {limit} bytes")
    return data, (file.filename or "upload")[:255]


async def _fetched(fetches: UrlFetches, username: str, url: str, config: GatewayConfig) -> tuple[bytes, str]:
    policy = FetchPolicy.allowing(
        *config.fetch_allowed_networks, max_bytes=config.max_upload_bytes, timeout=FETCH_SECONDS
    )
    try:
        data = await fetches.fetch(username, url, policy)
    except BlockedAddress as e:
        raise HTTPException(400, f"that URL is not allowed: {e}") from e
    except FetchError as e:
        raise HTTPException(400, f"the image could not be fetched: {e}") from e
    return data, url.rsplit("/", 1)[-1].split("?", 1)[0][:255] or "image"


async def _predict(
    client: aiohttp.ClientSession, base: str, name: str, data: bytes, media_type: str, timeout: float
) -> predictor.Prediction:
    """The predictor's answer for the raw image bytes (never a decoded tensor on the wire)."""
    try:
        return await predictor.predict(client, base, name, data, media_type, timeout=timeout)
    except predictor.ImageRefused as e:
        raise HTTPException(422, f"the model could not read the image: {e}") from e
    except predictor.PredictorUnavailable as e:
        raise HTTPException(503, f"the model {name!r} is not answering; try again") from e


def _store(store: ObjectStore, uri: str, data: bytes, media_type: str) -> None:
    store.write(uri, data, content_type=media_type)
