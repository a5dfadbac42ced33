"""Slow peers, tried as an attacker: a webhook receiver that holds its connection open must not hold
up anyone's settlement, and a webhook is delivered once per batch — a gateway that stops mid-delivery
leaves it to another, under the same delivery id. Real Redis, real HTTP receivers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from harness.gateway import fresh_redis_url
from harness.receiver import Receiver
from redis.asyncio import Redis

from kubeclassify.cli.services import RedisServer
from kubeclassify.core.resources import BatchCounts
from kubeclassify.core.webhooks import DELIVERY_HEADER, SIGNATURE_HEADER, verify
from kubeclassify.gateway.batches import WEBHOOKS, Batches, BatchRecord, finish
from kubeclassify.gateway.config import GatewayConfig
from kubeclassify.gateway.ledger import Ledger
from kubeclassify.gateway.webhooks import Webhooks


@pytest.fixture
def receivers() -> Iterator[Callable[[bool], Receiver]]:
    made: list[Receiver] = []

    def make(hold: bool) -> Receiver:
        made.append(Receiver(hold=hold))
        return made[-1]

    yield make
    for r in made:
        r.close()


CONFIG = GatewayConfig(fetch_allowed_networks=["127.0.0.0/8"])


def record(owner: str, url: str) -> BatchRecord:
    return BatchRecord(
        name=f"{owner}-0001",
        owner=owner,
        model="digits",
        column="url",
        input_uri="s3://b/in.csv",
        output_uri="s3://b/out.csv",
        counts=BatchCounts(total=3),
        reserved=3,
        webhook_url=url,
    )


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(600):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_receiver_that_holds_its_webhook_holds_up_no_ones_settlement(
    redis_server: RedisServer, receivers: Callable[[bool], Receiver]
) -> None:
    """Alice's receiver takes her webhook and does not answer. Her batch is settled regardless, and
    Bob's batch, ending after hers, is settled and announced while hers is still held; when her
    receiver answers, her webhook is recorded as delivered, once, signed, with its delivery id."""
    slow, fast = receivers(True), receivers(False)
    url = fresh_redis_url(redis_server)

    async def scenario() -> None:
        redis = Redis.from_url(url, decode_responses=True)
        batches, webhooks = Batches(redis), Webhooks(redis, CONFIG)
        await webhooks.start()
        try:
            secret = await batches.rotate_webhook_secret("alice")
            await batches.rotate_webhook_secret("bob")
            alice, bob = record("alice", slow.url), record("bob", fast.url)
            for r in (alice, bob):  # each paid for its 3 images when it was created
                await redis.set(f"kc:credits:{r.owner}", 3)
                assert (await Ledger(redis).reserve(r.run_id, r.owner, 3, 1, 0.0)).admitted
                await batches.add(r)
            await finish(batches, CONFIG, alice, "Succeeded", "", BatchCounts(classified=1, failed=2))
            await finish(batches, CONFIG, bob, "Succeeded", "", BatchCounts(classified=3))
            assert await redis.get("kc:credits:alice") == "2", "settled, whatever her receiver does"
            await until(lambda: _delivered(batches, bob.name), "bob's webhook")
            assert slow.received and not slow.answered, "bob was announced while alice's receiver held"

            slow.release.set()
            await until(lambda: _delivered(batches, alice.name), "alice's webhook")
            await finish(batches, CONFIG, alice, "Succeeded", "", BatchCounts(classified=1))  # seen again
            await asyncio.sleep(0.5)
            assert len(slow.received) == 1 and await redis.xlen(WEBHOOKS) == 0
            headers, body = slow.received[0]
            assert headers[DELIVERY_HEADER] == alice.name
            assert verify(secret.encode(), headers[SIGNATURE_HEADER], body)
        finally:
            await webhooks.stop()
            await redis.aclose()

    asyncio.run(scenario())


def test_a_gateway_that_stops_mid_delivery_leaves_the_webhook_to_another(
    redis_server: RedisServer, receivers: Callable[[bool], Receiver]
) -> None:
    """A replica takes the webhook and stops before the receiver answers: another replica sends it
    again, under the same delivery id, and records it delivered."""
    receiver = receivers(True)
    url = fresh_redis_url(redis_server)

    async def scenario() -> None:
        redis = Redis.from_url(url, decode_responses=True)
        batches = Batches(redis)
        first = Webhooks(redis, CONFIG, redeliver_seconds=1.0)
        await first.start()
        await batches.rotate_webhook_secret("carol")
        carol = record("carol", receiver.url)
        await batches.add(carol)
        await finish(batches, CONFIG, carol, "Failed", "the model is gone", BatchCounts())
        await until(lambda: _true(bool(receiver.received)), "the first try")
        await first.stop()  # mid-delivery: never acknowledged
        receiver.release.set()
        second = Webhooks(redis, CONFIG, redeliver_seconds=1.0)
        await second.start()
        try:
            await until(lambda: _delivered(batches, carol.name), "the webhook, from the second gateway")
            ids = [headers[DELIVERY_HEADER] for headers, _ in receiver.received]
            assert ids == [carol.name, carol.name] and await redis.xlen(WEBHOOKS) == 0
        finally:
            await second.stop()
            await redis.aclose()

    asyncio.run(scenario())


async def _delivered(batches: Batches, name: str) -> bool:
    r: Any = await batches.get(name)
    return bool(r and r.webhook_delivered)


async def _true(value: bool) -> bool:
    return value
