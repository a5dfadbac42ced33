"""The dynamic batcher: callers share model calls, each gets its own rows, shapes stay fixed."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from kubeclassify.inference.predictor.batching import DynamicBatcher, bucket_sizes


def test_bucket_sizes() -> None:
    assert bucket_sizes(1) == [1]
    assert bucket_sizes(32) == [1, 2, 4, 8, 16, 32]
    assert bucket_sizes(48) == [1, 2, 4, 8, 16, 32, 48]


def test_concurrent_callers_share_padded_calls_and_get_their_rows() -> None:
    shapes: list[int] = []
    observed: list[int] = []

    def model(x: np.ndarray) -> np.ndarray:
        shapes.append(len(x))
        return x.reshape(len(x), -1).sum(axis=1, keepdims=True) * 2

    async def scenario() -> list[np.ndarray]:
        batcher = DynamicBatcher(
            model, max_batch_size=8, max_latency=0.05, observe=lambda size, waits: observed.append(size)
        )
        calls = [batcher.submit(np.full((n, 2), float(i))) for i, n in enumerate([1, 3, 2, 1, 5, 4])]
        out = await asyncio.gather(*calls)
        await batcher.close()
        return out

    results = asyncio.run(scenario())
    for i, (n, r) in enumerate(zip([1, 3, 2, 1, 5, 4], results, strict=True)):
        assert r.shape == (n, 1) and np.all(r == 4.0 * i)
    assert sum(observed) == 16 and len(observed) < 6, "requests must share model calls"
    assert set(shapes) <= {1, 2, 4, 8}, "every call is padded to a fixed shape"


def test_a_request_larger_than_a_batch_is_split() -> None:
    shapes: list[int] = []

    def model(x: np.ndarray) -> np.ndarray:
        shapes.append(len(x))
        return x[:, :1]

    async def scenario() -> np.ndarray:
        batcher = DynamicBatcher(model, max_batch_size=4, max_latency=0.0)
        out = await batcher.submit(np.arange(10, dtype=np.float32).reshape(10, 1))
        await batcher.close()
        return out

    out = asyncio.run(scenario())
    assert out[:, 0].tolist() == list(range(10))
    assert max(shapes) == 4


def test_a_failing_model_call_fails_its_callers_and_the_batcher_goes_on() -> None:
    calls = 0

    def model(x: np.ndarray) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("out of memory")
        return x

    async def scenario() -> np.ndarray:
        batcher = DynamicBatcher(model, max_batch_size=4, max_latency=0.0)
        with pytest.raises(RuntimeError, match="out of memory"):
            await batcher.submit(np.ones((1, 1)))
        out = await batcher.submit(np.ones((1, 1)))
        await batcher.close()
        return out

    assert asyncio.run(scenario()).tolist() == [[1.0]]
