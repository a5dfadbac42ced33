"""The ledger against a real redis-server: a run is reserved once and settled once, however many
callers race for it, never on more than its owner has, never charged above what it reserved."""

from __future__ import annotations

import asyncio

from harness.gateway import fresh_redis_url
from redis.asyncio import Redis

from kubeclassify.cli.services import RedisServer
from kubeclassify.gateway.ledger import Ledger


def test_a_run_is_reserved_once_and_settled_once_whoever_asks(redis_server: RedisServer) -> None:
    url = fresh_redis_url(redis_server)

    async def scenario() -> None:
        redis = Redis.from_url(url, decode_responses=True)
        ledger = Ledger(redis)
        try:
            await redis.set("kc:credits:alice", 10)
            # Twenty replicas admit the same run at once, each having counted a different number
            # of images: one reservation, and every one of them admits it for the same images.
            answers = await asyncio.gather(
                *(ledger.reserve("run-1", "alice", 4 + i % 3, 1, 0.0) for i in range(20))
            )
            assert len({(a.admitted, a.images) for a in answers}) == 1 and answers[0].admitted
            images = answers[0].images
            assert int(await redis.get("kc:credits:alice")) == 10 - images

            # More than is left: refused, nothing taken, and refused again for every caller.
            big = await asyncio.gather(*(ledger.reserve("run-2", "alice", 50, 1, 0.0) for _ in range(5)))
            assert all(not a.admitted for a in big)
            assert int(await redis.get("kc:credits:alice")) == 10 - images
            assert await ledger.settle("run-2", "alice", 50) is None, "a refused run is never settled"

            # Settled once, on the images classified, capped at what was reserved.
            settled = await asyncio.gather(*(ledger.settle("run-1", "alice", 100) for _ in range(10)))
            assert sorted(settled, key=lambda x: x is None) == [images] + [None] * 9
            assert int(await redis.get("kc:credits:alice")) == 10 - images
            record = await ledger.get("run-1")
            assert (record["state"], record["used"], record["refunded"]) == ("settled", str(images), "0")

            # A run that classified less gets the rest back; an unknown run settles nothing.
            assert (await ledger.reserve("run-3", "alice", 3, 2, 0.0)).admitted  # 6 credits
            assert await ledger.settle("run-3", "alice", 1) == 2
            assert int(await redis.get("kc:credits:alice")) == 10 - images - 2
            assert await ledger.settle("nobody", "alice", 1) is None
        finally:
            await redis.aclose()

    asyncio.run(scenario())
