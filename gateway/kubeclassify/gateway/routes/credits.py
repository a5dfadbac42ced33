"""Usage credits: my balance; admins refill and list."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from kubeclassify.gateway.deps import AccountsDep, AdminUser, ConfigDep, CurrentUser
from kubeclassify.gateway.errors import problems

router = APIRouter(prefix="/v1", tags=["credits"], responses=problems("4XX"))


class Balance(BaseModel):
    username: str
    credits: int


class Refill(BaseModel):
    amount: int | None = Field(
        None, ge=1, le=10_000_000, description="Credits to add (default: the refill setting)."
    )


@router.get("/credits", response_model=Balance, summary="My credits")
async def my_credits(user: CurrentUser) -> Any:
    return {"username": user.username, "credits": user.credits}


@router.post("/admin/credits/{username}", response_model=Balance, summary="Refill an account (admin)")
async def refill(
    username: str, body: Refill, admin: AdminUser, accounts: AccountsDep, config: ConfigDep
) -> Any:
    if await accounts.user(username) is None:
        raise HTTPException(404, f"no account {username!r}")
    return {
        "username": username,
        "credits": await accounts.credit(username, body.amount or config.refill_amount),
    }


@router.get("/admin/credits", response_model=list[Balance], summary="Every balance (admin)")
async def balances(admin: AdminUser, accounts: AccountsDep) -> Any:
    return [{"username": u, "credits": c} for u, c in (await accounts.balances()).items()]
