"""My classified images (an admin sees everyone's): list, download, delete, counts per category."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response

from kubeclassify.core.storage import ObjectNotFound, StorageError
from kubeclassify.gateway.deps import CurrentUser, ImagesDep, StoreDep, owned
from kubeclassify.gateway.errors import SIGNED_IN, problems
from kubeclassify.gateway.images import categories, page, remove
from kubeclassify.gateway.schemas import ImageInfo, ImagePage

router = APIRouter(prefix="/v1", tags=["images"], responses=SIGNED_IN)


@router.get("/images", response_model=ImagePage, summary="My images, newest first")
async def list_images(
    user: CurrentUser,
    images: ImagesDep,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    category: Annotated[str | None, Query(max_length=256, description="Only this label.")] = None,
) -> Any:
    """My classified images, newest first, paged; `category` keeps one label. Admins see everyone's."""
    owner = None if user.is_admin else user.username
    records, total = await page(images, owner, offset, limit, category)
    return {"items": [r.public() for r in records], "total": total, "offset": offset, "limit": limit}


@router.get("/images/{uid}", response_model=ImageInfo, summary="One image's record", responses=problems(404))
async def get_image(uid: str, user: CurrentUser, images: ImagesDep) -> Any:
    """One image's record: label, score, top k, model, time, file name and its `path` for a batch
    CSV."""
    return owned(await images.get(uid), user, f"image {uid!r}").public()


@router.get(
    "/images/{uid}/content", summary="The original image", response_class=Response, responses=problems(404)
)
async def download(uid: str, user: CurrentUser, images: ImagesDep, store: StoreDep) -> Response:
    """The original image as it was uploaded or fetched."""
    record = owned(await images.get(uid), user, f"image {uid!r}")
    try:
        data = await asyncio.to_thread(store.read, record.uri)
    except ObjectNotFound as e:
        raise HTTPException(404, f"the original of {uid!r} is gone") from e
    except StorageError as e:
        raise HTTPException(503, "the image store is not answering; try again") from e
    headers = {"Content-Disposition": f'attachment; filename="{uid}"', "X-Content-Type-Options": "nosniff"}
    return Response(data, media_type=record.content_type, headers=headers)


@router.delete(
    "/images/{uid}", status_code=204, summary="Delete an image and its record", responses=problems(404)
)
async def delete_image(uid: str, user: CurrentUser, images: ImagesDep, store: StoreDep) -> None:
    """Delete an image: the original and its record."""
    record = owned(await images.get(uid), user, f"image {uid!r}")
    with contextlib.suppress(ObjectNotFound):
        await asyncio.to_thread(store.delete, record.uri)
    await remove(images, record)


@router.get("/categories", response_model=dict[str, int], summary="My images per label")
async def count_categories(user: CurrentUser, images: ImagesDep) -> Any:
    """How many of my images have each label."""
    return await categories(images, user.username)
