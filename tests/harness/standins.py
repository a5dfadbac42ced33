"""Stand-ins for what the gateway's routes depend on, for the unit tier's dependency overrides."""

from __future__ import annotations

from typing import Any

from kubeclassify.gateway.catalog import NotReady


class Records:
    """Records by name, as Images, Batches and Schedules give them; nothing else is asked here."""

    def __init__(self, *records: Any) -> None:
        self.records = {getattr(r, "uid", None) or r.name: r for r in records}

    async def get(self, name: str) -> Any:
        return self.records.get(name)


class Untouched:
    """The accounts' store and the ledger, for requests refused before either is used: any use fails."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"refused too late: {name} was used")


class Catalog:
    def __init__(self, models: dict[str, str | None]) -> None:
        self.models = models  # name -> predictor URL; None: exists but does not serve yet

    async def resolve(self, name: str) -> str | None:
        if name in self.models and self.models[name] is None:
            raise NotReady(f"model {name!r} is not ready")
        return self.models.get(name)

    async def describe(self) -> list[dict[str, Any]]:
        return [{"name": n, "ready": url is not None} for n, url in self.models.items()]

    async def check(self) -> None:
        return None
