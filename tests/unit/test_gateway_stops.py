"""A gateway replica stops when it is asked to, also when the cancel reaches redis-py in the middle of
a call and comes out as redis-py's own error (a ConnectionError, a TimeoutError), or is dropped by
Python 3.11's wait_for, as both can while Redis restarts; the chaos tier saw replicas that never
finished shutting down. The backends' and the consumer's stops cancel until their tasks end
(`stop_tasks`); the start-up retry is cancelled once here, so its test also shows that the loop
itself tells a cancel from a Redis failure (`stop_if_cancelled`)."""

from __future__ import annotations

import asyncio
import types
from typing import Any

import pytest
from kubernetes import client
from redis.exceptions import ConnectionError as RedisConnectionError

from kubeclassify.gateway import app as gateway_app
from kubeclassify.gateway.kube_batches import KubernetesBatches
from kubeclassify.gateway.webhooks import Webhooks

HANG = 10.0  # far longer than a stop takes; a stop that needs it is a stop that never ends
_real_sleep = asyncio.sleep


class RedisRestarting:
    """A Redis going away: the first call is under way when its task is cancelled, and redis-py
    reports the cancel as its error; every later call finds Redis gone."""

    def __init__(self) -> None:
        self.calls = 0

    async def call(self, *_: Any, **__: Any) -> Any:
        self.calls += 1
        if self.calls > 1:
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        try:
            await _real_sleep(3600)
        except asyncio.CancelledError:
            raise RedisConnectionError("Connection closed by server.") from None

    def __getattr__(self, name: str) -> Any:
        return self.call


def config() -> Any:
    return types.SimpleNamespace(
        namespace="ns", fetch_allowed_networks=[], webhook_workers=1, image_cost=1, manifest=None
    )


async def stopped(stop: Any) -> None:
    """Wait for `stop()`, up to HANG seconds, without cancelling it (a cancel would be taken the same way)."""
    done, _ = await asyncio.wait({asyncio.ensure_future(stop())}, timeout=HANG)
    if not done:
        pytest.fail(f"not stopped after {HANG} s: the cancel was taken for a Redis error")
    done.pop().result()


def run(scenario: Any) -> None:
    """Run the scenario on a loop of its own, left with whatever would not stop (asyncio.run would
    wait for it for ever)."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(scenario)
    finally:
        loop.close()


def test_the_kubernetes_backends_follower_stops() -> None:
    async def scenario() -> None:
        state = types.SimpleNamespace(
            config=config(), accounts=types.SimpleNamespace(redis=RedisRestarting())
        )
        backend = KubernetesBatches(state, client.ApiClient())
        backend.refresh = RedisRestarting().call  # type: ignore[method-assign]
        await backend.start()
        await asyncio.sleep(0.05)  # it is in the middle of its first list
        await stopped(backend.stop)

    run(scenario())


def test_the_webhook_consumer_stops() -> None:
    async def scenario() -> None:
        hooks = Webhooks(RedisRestarting(), config())
        hooks.task = asyncio.create_task(hooks._consume())
        await asyncio.sleep(0.05)
        await stopped(hooks.stop)

    run(scenario())


def test_starting_again_stops() -> None:
    """The lifespan's retry of what could not start while Redis was away."""

    async def scenario() -> None:
        retrying = asyncio.create_task(gateway_app._retry(RedisRestarting().call))
        await asyncio.sleep(1.1)  # its first try is under way

        async def stop() -> None:
            retrying.cancel()
            await asyncio.gather(retrying, return_exceptions=True)

        await stopped(stop)

    run(scenario())


class AnsweredAsCancelled:
    """A Redis call whose reply comes in the same turn of the loop as the cancel: redis-py sends
    each command under `asyncio.wait_for` when a socket timeout is set, and Python 3.11's wait_for
    then returns the reply and drops the cancel (CPython gh-86296). The chaos tier met it while
    Redis restarted, in the follower's settlement of a run."""

    def __init__(self) -> None:
        self.reply = asyncio.Event()

    async def call(self, *_: Any, **__: Any) -> str:
        await asyncio.wait_for(self.reply.wait(), 5)
        return "1"


def test_the_follower_stops_when_a_reply_and_the_cancel_cross() -> None:
    async def scenario() -> None:
        state = types.SimpleNamespace(
            config=config(), accounts=types.SimpleNamespace(redis=RedisRestarting())
        )
        backend = KubernetesBatches(state, client.ApiClient())
        redis = AnsweredAsCancelled()
        backend.refresh = redis.call  # type: ignore[method-assign]

        async def quiet_watch(version: str) -> str:  # a watch with nothing to say: it waits
            await asyncio.Event().wait()
            return version

        backend._watch = quiet_watch  # type: ignore[method-assign]
        await backend.start()
        await asyncio.sleep(0.05)  # in the middle of its first list

        async def stop() -> None:
            redis.reply.set()  # the reply and the cancel in one turn of the loop
            await backend.stop()

        await stopped(stop)

    run(scenario())
