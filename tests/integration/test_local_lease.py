"""One gateway replica runs the local batch backend, held by a lease in Redis. A replica that lost
its lease (paused past its expiry while another took it over) must not take it back by renewing it,
nor keep running batches beside the new holder."""

from __future__ import annotations

import asyncio
import types

import pytest
from harness.gateway import fresh_redis_url
from redis.asyncio import Redis

from kubeclassify.cli.services import RedisServer
from kubeclassify.gateway import local_batches
from kubeclassify.gateway.accounts import Accounts
from kubeclassify.gateway.config import GatewayConfig
from kubeclassify.gateway.local_batches import LEASE, LocalBatches, SecondReplica

pytestmark = pytest.mark.integration


def replica(redis: Redis) -> LocalBatches:
    return LocalBatches(types.SimpleNamespace(config=GatewayConfig(), accounts=Accounts(redis)))


def test_a_replica_that_lost_its_lease_does_not_take_it_back(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_batches, "LEASE_SECONDS", 1)  # renewed every third of a second
    url = fresh_redis_url(redis_server)

    async def scenario() -> tuple[bool, bool]:
        redis = Redis.from_url(url, decode_responses=True)
        first, second = replica(redis), replica(redis)
        await first.start()
        with pytest.raises(SecondReplica):
            await second.start()
        # The first replica stalls past its lease (a long pause, a partition): the lease expires and
        # the second takes over. Then the first wakes up and goes on renewing.
        first_keeper = first.lease_task
        assert first_keeper is not None
        await redis.delete(LEASE)
        await second.start()
        await asyncio.sleep(0.8)  # two renewals of the first replica's, inside the second's lease
        holder = await redis.get(LEASE)
        kept_by_second, stopped = holder == second.holder, first_keeper.done()
        await first.stop()
        assert await redis.get(LEASE) == holder, "stopping the first gave back the second's lease"
        await second.stop()
        assert await redis.get(LEASE) is None
        await redis.aclose()
        return kept_by_second, stopped

    kept_by_second, stopped = asyncio.run(scenario())
    assert kept_by_second, "the replica that lost its lease took it back from the new holder"
    assert stopped, "the replica that lost its lease goes on renewing it"


def test_a_lease_redis_lost_is_taken_again_by_its_holder(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_batches, "LEASE_SECONDS", 1)
    url = fresh_redis_url(redis_server)

    async def scenario() -> tuple[str | None, bool]:
        redis = Redis.from_url(url, decode_responses=True)
        only = replica(redis)
        await only.start()
        await redis.delete(LEASE)  # Redis restarted without its data, say: no one holds the lease
        await asyncio.sleep(0.8)
        assert only.lease_task is not None
        held, renewing = await redis.get(LEASE), not only.lease_task.done()
        await only.stop()
        await redis.aclose()
        return held, renewing and held == only.holder

    held, ours = asyncio.run(scenario())
    assert held is not None and ours, "the only replica gave up a lease no one else holds"
