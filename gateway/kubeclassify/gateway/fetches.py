"""Image URLs the gateway fetches for a classification, on a pool of their own, a few per account."""

from __future__ import annotations

import asyncio
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from fastapi import HTTPException

from kubeclassify.core.fetch import FetchPolicy, fetch


class UrlFetches:
    """Image URLs are fetched on a pool of their own (`workers` threads: never the default pool that
    S3 calls and /readyz share), and one account may have at most `per_account` fetches running in
    this gateway process at once (429 beyond): a slow server costs its own account, not everyone."""

    def __init__(self, workers: int, per_account: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch")
        self._per_account = per_account
        self._running: Counter[str] = Counter()

    async def fetch(self, username: str, url: str, policy: FetchPolicy) -> bytes:
        if self._running[username] >= self._per_account:
            raise HTTPException(
                429,
                f"{self._per_account} of your image URLs are being fetched already: wait for one to finish",
                headers={"Retry-After": "1"},
            )
        self._running[username] += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fetch, url, policy)
        finally:
            self._running[username] -= 1
            if not self._running[username]:
                del self._running[username]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
