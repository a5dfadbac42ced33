"""The models one can classify with: each predictor's name, readiness, version, labels, description."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from kubeclassify.gateway.deps import CatalogDep, ConfigDep, CurrentUser
from kubeclassify.gateway.errors import SIGNED_IN
from kubeclassify.gateway.schemas import ModelInfo

router = APIRouter(prefix="/v1", tags=["models"], responses=SIGNED_IN)


@router.get("/models", response_model=list[ModelInfo], summary="Models, and whether each serves now")
async def list_models(user: CurrentUser, config: ConfigDep, catalog: CatalogDep) -> Any:
    """The models this gateway serves, whether each serves now, its version, labels and description,
    and which is the default."""
    models = await catalog.describe()
    return [{**m, "default": m["name"] == config.default_model} for m in models]
