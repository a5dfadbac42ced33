"""What the routes need of the two ways batches and schedules run: as local worker processes
(`local_batches`, `schedules.Scheduler`) or as ClassificationBatches the operator runs
(`kube_batches`). One Protocol each, so a route is written once for both; and `Platform`, what
both are made with."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from kubeclassify.core.settings import S3Settings
    from kubeclassify.core.storage import ObjectStore
    from kubeclassify.gateway.accounts import Accounts
    from kubeclassify.gateway.catalog import Catalog
    from kubeclassify.gateway.config import GatewayConfig
    from kubeclassify.gateway.schedules import Fired, ScheduleRecord


@dataclass(frozen=True)
class Platform:
    """What the gateway's background work runs on, made once in the app's lifespan: its settings,
    the accounts' Redis (every record lives there), storage, the model catalog, and the S3
    settings handed to local batch workers."""

    config: GatewayConfig
    accounts: Accounts
    store: ObjectStore
    catalog: Catalog
    s3: S3Settings


class BatchBackend(Protocol):
    async def start(self) -> None:
        """Begin following the batches (after Redis answers)."""

    async def stop(self) -> None:
        """Stop following them; returns when every background task has ended."""

    async def submit(self, name: str) -> None:
        """Run the batch recorded under `name` (its credits are reserved already)."""

    async def cancel(self, name: str) -> None:
        """Stop the batch and end it as cancelled (unless it ended first), charged for the images
        it classified before it stopped; the rest of its credits are given back."""

    async def forget(self, name: str) -> None:
        """Remove what runs the ended batch, if anything is left of it."""


class ScheduleBackend(Protocol):
    async def create(self, schedule: ScheduleRecord) -> None: ...

    async def delete(self, schedule: ScheduleRecord) -> None: ...

    async def set_paused(self, schedule: ScheduleRecord, paused: bool) -> None: ...

    async def update(self, schedule: ScheduleRecord, edit: Callable[[ScheduleRecord], None]) -> None:
        """Apply `edit` (already applied to `schedule`) to the stored schedule and to what runs it."""

    async def fire_now(self, schedule: ScheduleRecord) -> Fired | None:
        """Fire the schedule now, as its cron would: what the firing did, or None when another
        process takes the date (the operator)."""

    async def run(self, schedule: ScheduleRecord, date: dt.date) -> str | None:
        """Run one date of the schedule now; the run's name, or None when it has no images."""

    async def history(self, schedule: ScheduleRecord, limit: int) -> list[dict[str, Any]]:
        """The schedule's last `limit` runs, newest first (the fields of schemas.ScheduleRun)."""

    async def outputs(self, schedule: ScheduleRecord) -> list[str]:
        """The results objects of the schedule's dates, oldest first."""
