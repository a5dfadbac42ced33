"""The ledger: every run of a gateway batch is paid for exactly once.

A run is admitted by reserving its credits, and settled once when it ends. Both happen against one
record per run in Redis, `kc:run:<run id>` (a hash: owner, state, images, price, reserved, used,
refunded), each step one Lua script. So however many replicas, retries and restarts see the same
run, it is reserved at most once and settled at most once:

- `reserve` takes `images x price` from the owner's balance and records the run `reserved`, or, when
  the balance does not cover it, records the run `refused` (and takes nothing). A second call for
  the same run id answers what the first decided: every replica admits or refuses it alike, and
  admits it for the same number of images.
- `settle` charges the images classified (never more than were reserved), gives back the rest and
  records the run `settled`; only a reserved run is settled, and only once.

A run id is the run's Job name on the Kubernetes backend (`core`'s run_id) and the batch's name on
the local one. The records stay: they are the account's history of what it paid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REFUSED_SECONDS = 30 * 86400  # a refusal is kept long enough for every replica to see it

_RESERVE = """
local found = redis.call('HMGET', KEYS[1], 'state', 'images')
if found[1] then return {found[1], tonumber(found[2])} end
local images, price = tonumber(ARGV[2]), tonumber(ARGV[3])
local cost = images * price
if tonumber(redis.call('GET', KEYS[2]) or '0') < cost then
  redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'state', 'refused', 'images', images, 'price', price,
             'reserved', 0, 'time', ARGV[4])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  return {'refused', images}
end
redis.call('DECRBY', KEYS[2], cost)
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'state', 'reserved', 'images', images, 'price', price,
           'reserved', cost, 'used', 0, 'refunded', 0, 'time', ARGV[4])
return {'reserved', images}
"""

_SETTLE = """
local run = redis.call('HMGET', KEYS[1], 'state', 'images', 'price', 'reserved')
if run[1] ~= 'reserved' then return -1 end
local charged = math.min(tonumber(ARGV[1]), tonumber(run[2])) * tonumber(run[3])
charged = math.min(charged, tonumber(run[4]))
local refund = tonumber(run[4]) - charged
redis.call('INCRBY', KEYS[2], refund)
redis.call('HSET', KEYS[1], 'state', 'settled', 'used', charged, 'refunded', refund)
return charged
"""


@dataclass(frozen=True)
class Admission:
    admitted: bool
    images: int  # what the run was admitted (or refused) for: it classifies at most these


class Ledger:
    def __init__(self, redis: Any) -> None:
        self.redis = redis

    async def reserve(self, run: str, owner: str, images: int, price: int, now: float) -> Admission:
        """Admit the run by reserving `images x price` credits of `owner`'s, once; what was decided."""
        keys = [f"kc:run:{run}", f"kc:credits:{owner}"]
        state, admitted_for = await self.redis.eval(
            _RESERVE, 2, *keys, owner, images, price, repr(now), REFUSED_SECONDS
        )
        return Admission(state != "refused", int(admitted_for))

    async def settle(self, run: str, owner: str, classified: int) -> int | None:
        """Charge the run for the images it classified and give back the rest, once: what it was
        charged, or None when there was nothing to settle (settled before, refused, unknown)."""
        charged = int(await self.redis.eval(_SETTLE, 2, f"kc:run:{run}", f"kc:credits:{owner}", classified))
        return None if charged < 0 else charged

    async def get(self, run: str) -> dict[str, str]:
        """The run's record ({} for a run never admitted)."""
        return dict(await self.redis.hgetall(f"kc:run:{run}"))
