"""The `kubernetes` batch backend: each gateway batch becomes a ClassificationBatch in the gateway's
namespace (named `<owner>-<short id>`, labelled with the owner); the operator runs it. Every replica
watches how they end by listing them every `batch_poll_seconds`, and settles each once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from kubeclassify.core import constants as c
from kubeclassify.gateway.batches import GATEWAY, Batches, batch_resource, finish

log = logging.getLogger(__name__)

ENDED = ("Succeeded", "Failed")


class KubernetesBatches:
    def __init__(self, app_state: Any, api: Any) -> None:
        from kubernetes import client

        self.config = app_state.config
        self.batches = Batches(app_state.accounts.redis)
        self.custom = client.CustomObjectsApi(api)
        self.poller: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.poller = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        if self.poller is not None:
            self.poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.poller

    async def submit(self, name: str) -> None:
        """Create the batch's ClassificationBatch; the Kubernetes API's refusal is raised."""
        record = await self.batches.get(name)
        assert record is not None
        body = batch_resource(record, self.config)
        await asyncio.to_thread(
            self.custom.create_namespaced_custom_object,
            c.GROUP,
            c.VERSION,
            self.config.namespace,
            c.PLURALS[c.CLASSIFICATION_BATCH],
            body,
            _request_timeout=10,
        )

    async def _poll(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # noqa: BLE001 - the API may be away for a while; try again later
                log.warning("could not read the ClassificationBatches", exc_info=True)
            await asyncio.sleep(self.config.batch_poll_seconds)

    async def refresh(self) -> None:
        """Bring the records of active batches in step with their resources' status."""
        active = set(await self.batches.active())
        if not active:
            return
        listed: Any = await asyncio.to_thread(
            self.custom.list_namespaced_custom_object,
            c.GROUP,
            c.VERSION,
            self.config.namespace,
            c.PLURALS[c.CLASSIFICATION_BATCH],
            label_selector=f"{c.LABEL_MANAGED_BY}={GATEWAY}",
            _request_timeout=10,
        )
        for body in listed.get("items") or []:
            name = body["metadata"]["name"]
            record = await self.batches.get(name) if name in active else None
            if record is None:
                continue
            status = body.get("status") or {}
            counts = status.get("counts") or {}
            if status.get("phase") in ENDED:
                message = next(
                    (
                        x.get("message", "")
                        for x in status.get("conditions") or []
                        if x.get("type") == "Failed"
                    ),
                    "",
                )
                await finish(self.batches, self.config, record, status["phase"], message or "", counts)
            elif status.get("phase") == "Running" and record.state != "Running":
                record.state = "Running"
                await self.batches.update(record)
