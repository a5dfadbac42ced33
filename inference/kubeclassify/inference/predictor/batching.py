"""Dynamic batching inside the predictor: concurrent requests share one model call.

Requests queue up; a single worker takes as many rows as fit in `max_batch_size`, waiting at most
`max_latency` for more after the first, pads the batch to the next power of two (so the model
only ever sees a few fixed shapes), runs the model on its own thread, and hands each caller its
rows. While the model runs, new requests gather for the next call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


def bucket_sizes(max_batch_size: int) -> list[int]:
    """The padded batch shapes: powers of two below the maximum, and the maximum."""
    sizes, n = [], 1
    while n < max_batch_size:
        sizes.append(n)
        n *= 2
    return [*sizes, max_batch_size]


def run_padded(run: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, size: int) -> np.ndarray:
    """`run` on `batch` padded with zeros to `size` rows; returns the real rows' outputs.

    On a CPU a model's arithmetic depends on the batch's shape (the kernels block differently), so
    the same image can score a few ulps apart in batches of 4 and 16; within one shape, a row's
    output does not depend on its neighbours or its place.
    """
    n = len(batch)
    if size != n:
        batch = np.concatenate([batch, np.zeros((size - n, *batch.shape[1:]), dtype=batch.dtype)])
    return np.asarray(run(batch))[:n]


@dataclass
class _Pending:
    rows: np.ndarray
    future: asyncio.Future[np.ndarray]
    queued: float = field(default_factory=time.monotonic)


class DynamicBatcher:
    """Gathers concurrent `submit` calls into padded model calls of up to `max_batch_size` rows."""

    def __init__(
        self,
        run: Callable[[np.ndarray], np.ndarray],
        max_batch_size: int,
        max_latency: float,
        observe: Callable[[int, list[float]], None] | None = None,
    ) -> None:
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_latency = max_latency
        self.buckets = bucket_sizes(max_batch_size)
        self._observe = observe or (lambda size, waits: None)
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model")

    def padded(self, n: int) -> int:
        """The bucket a batch of `n` rows is padded to."""
        return next(b for b in self.buckets if b >= n)

    def run_padded(self, batch: np.ndarray) -> np.ndarray:
        """Run the model on `batch` padded with zeros to its bucket; returns the real rows."""
        return run_padded(self._run, batch, self.padded(len(batch)))

    async def submit(self, rows: np.ndarray) -> np.ndarray:
        """The model's output for `rows`, computed together with whatever else is waiting."""
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work())
        loop = asyncio.get_running_loop()
        parts = []
        for start in range(0, len(rows), self.max_batch_size):
            pending = _Pending(rows[start : start + self.max_batch_size], loop.create_future())
            self._queue.put_nowait(pending)
            parts.append(pending.future)
        return np.concatenate(await asyncio.gather(*parts))

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        carry: _Pending | None = None
        while True:
            first = carry or await self._queue.get()
            carry = None
            batch, size = [first], len(first.rows)
            deadline = loop.time() + self.max_latency
            while size < self.max_batch_size:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                if size + len(item.rows) > self.max_batch_size:
                    carry = item  # it opens the next batch
                    break
                batch.append(item)
                size += len(item.rows)
            live = [p for p in batch if not p.future.cancelled()]
            if not live:
                continue
            now = time.monotonic()
            self._observe(sum(len(p.rows) for p in live), [now - p.queued for p in live])
            try:
                out = await loop.run_in_executor(
                    self._executor, self.run_padded, np.concatenate([p.rows for p in live])
                )
            except Exception as e:  # every caller of this batch gets the failure
                for p in live:
                    if not p.future.done():
                        p.future.set_exception(e)
                continue
            offset = 0
            for p in live:
                n = len(p.rows)
                if not p.future.done():
                    p.future.set_result(out[offset : offset + n])
                offset += n

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=False)
