"""Usage credits: my balance; admins refill and list."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from kubeclassify.gateway.deps import AccountsDep, AdminUser, ConfigDep, CurrentUser
from kubeclassify.gateway.errors import SIGNED_IN, problems
from kubeclassify.gateway.schemas import Balance, Refill

router = APIRouter(prefix="/v1", tags=["credits"], responses=SIGNED_IN)


@router.get("/credits", response_model=Balance, summary="My credits")
async def my_credits(user: CurrentUser) -> Any:
    """My credits: what my account can still spend on images."""
    return {"username": user.username, "credits": user.credits}


@router.post(
    "/admin/credits/{username}",
    response_model=Balance,
    summary="Refill an account (admin)",
    responses=problems(403, 404, 413),
)
async def refill(
    username: str, body: Refill, admin: AdminUser, accounts: AccountsDep, config: ConfigDep
) -> Any:
    """Add credits to an account (admin): `amount`, or REFILL_AMOUNT."""
    if await accounts.user(username) is None:
        raise HTTPException(404, f"no account {username!r}")
    amount = body.amount or config.refill_amount
    credits = await accounts.credit(username, amount)
    await accounts.audit(username, "refilled", amount=amount, by=admin.username)
    return {"username": username, "credits": credits}


@router.get(
    "/admin/credits", response_model=list[Balance], summary="Every balance (admin)", responses=problems(403)
)
async def balances(admin: AdminUser, accounts: AccountsDep) -> Any:
    """Every account's credits (admin)."""
    return [{"username": u, "credits": c} for u, c in (await accounts.balances()).items()]
