"""How long a refused request waits, over a sliding minute (the count is in the sign-in script;
its arithmetic is integration-tested against Redis in test_gateway_accounts)."""

from __future__ import annotations

import pytest

from kubeclassify.gateway.accounts import rate_wait

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("current", "previous", "into", "per_minute", "wait"),
    [
        (3, 0, 15.0, 3, 65),  # full now: 45 s to the next minute, then 3 x 40/60 + 1 fits
        (0, 3, 0.0, 3, 20),  # last minute's three weigh 2 after 20 s
        (1, 0, 30.0, 1, 90),  # one a minute: that one weighs nothing only at the next minute's end
        (0, 1, 59.5, 1, 1),  # half a second left: still a whole second
        (5, 10, 30.0, 10, 6),  # at 36 s the last minute's ten weigh 4: 4 + 5 + 1 fits
    ],
)
def test_a_refused_request_waits_until_its_sliding_minute_has_room(
    current: int, previous: int, into: float, per_minute: int, wait: int
) -> None:
    assert rate_wait(current, previous, into, per_minute) == wait
