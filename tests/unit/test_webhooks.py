"""Signed webhooks: the signature verifies only with the right secret, body and a recent time;
delivery retries what may pass and stops at what will not; private receivers are refused."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import stamina
from harness.receiver import Receiver

from kubeclassify.core.fetch import FetchPolicy
from kubeclassify.core.webhooks import DELIVERY_HEADER, SIGNATURE_HEADER, deliver, signature, verify

SECRET = b"s3cret-for-tests"
LOCAL = FetchPolicy.allowing("127.0.0.0/8")


def test_signature_verifies_only_the_signed_body_with_the_secret_at_a_recent_time() -> None:
    body = b'{"batch":"daily","phase":"Succeeded"}'
    now = time.time()
    header = signature(SECRET, int(now), body)
    assert verify(SECRET, header, body, now)
    assert not verify(b"another secret", header, body, now)
    assert not verify(SECRET, header, body + b" ", now)
    assert not verify(SECRET, header, body, now + 301), "a replay after the tolerance is refused"
    assert not verify(SECRET, "t=abc,v1=00", body, now)
    assert not verify(SECRET, "", body, now)


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    r = Receiver(getattr(request, "param", []))
    yield r
    r.close()


@pytest.fixture
def waits() -> Iterator[list[float]]:
    """The waits stamina schedules between tries, in order."""
    seen: list[float] = []
    hooks = stamina.instrumentation.get_on_retry_hooks()
    stamina.instrumentation.set_on_retry_hooks([lambda details: seen.append(details.wait_for)])
    yield seen
    stamina.instrumentation.set_on_retry_hooks(hooks)


@pytest.mark.parametrize("receiver", [[503, 500]], indirect=True)
def test_delivery_retries_5xx_with_backoff_then_succeeds_signed(
    receiver: Receiver, waits: list[float]
) -> None:
    payload = {"batch": "daily", "counts": {"total": 3}}
    result = deliver(receiver.url, payload, SECRET, policy=LOCAL, backoff=0.05, delivery="ns.job-1")
    assert (result.delivered, result.attempts, result.status_code) == (True, 3, 204)
    assert len(waits) == 2 and 0.05 <= waits[0] <= 0.1 and 0.1 <= waits[1] <= 0.15, "doubling, with jitter"
    assert [h[DELIVERY_HEADER] for h, _ in receiver.received] == ["ns.job-1"] * 3  # one id, every try
    headers, body = receiver.received[-1]
    assert json.loads(body) == {"batch": "daily", "counts": {"total": 3}}
    assert verify(SECRET, headers[SIGNATURE_HEADER], body)


@pytest.mark.parametrize("receiver", [[400]], indirect=True)
def test_a_refusal_is_not_retried(receiver: Receiver, waits: list[float]) -> None:
    result = deliver(receiver.url, {"batch": "x"}, None, policy=LOCAL)
    assert (result.delivered, result.attempts, result.status_code, result.retryable) == (False, 1, 400, False)
    assert waits == []
    assert SIGNATURE_HEADER not in receiver.received[0][0], "no secret, no signature"


@pytest.mark.parametrize("receiver", [[500] * 10], indirect=True)
def test_delivery_gives_up_after_its_attempts(receiver: Receiver) -> None:
    result = deliver(receiver.url, {"batch": "x"}, SECRET, policy=LOCAL, attempts=3, backoff=0.01)
    assert (result.delivered, result.attempts, result.status_code) == (False, 3, 500)
    assert "HTTP 500" in (result.error or "")


def test_a_private_receiver_is_refused_without_retrying(receiver: Receiver, waits: list[float]) -> None:
    result = deliver(receiver.url, {"batch": "x"}, SECRET)
    assert waits == [], "no retry"
    assert not result.delivered and result.attempts == 1
    assert "not a public address" in (result.error or "")
    assert receiver.received == []
