"""Signed webhooks: the signature verifies only with the right secret, body and a recent time;
delivery retries what may pass and stops at what will not; private receivers are refused."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

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


class Receiver:
    """A local HTTP receiver that answers the given statuses in turn and keeps what it got."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses, self.received = list(statuses), []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    r = Receiver(getattr(request, "param", []))
    yield r
    r.server.shutdown()


@pytest.mark.parametrize("receiver", [[503, 500]], indirect=True)
def test_delivery_retries_5xx_with_backoff_then_succeeds_signed(receiver: Receiver) -> None:
    waits: list[float] = []
    payload = {"batch": "daily", "counts": {"total": 3}}
    result = deliver(receiver.url, payload, SECRET, policy=LOCAL, sleep=waits.append, delivery="ns.job-1")
    assert (result.delivered, result.attempts, result.status_code) == (True, 3, 200)
    assert waits == [1.0, 2.0]
    assert [h[DELIVERY_HEADER] for h, _ in receiver.received] == ["ns.job-1"] * 3  # one id, every try
    headers, body = receiver.received[-1]
    assert json.loads(body) == {"batch": "daily", "counts": {"total": 3}}
    assert verify(SECRET, headers[SIGNATURE_HEADER], body)


@pytest.mark.parametrize("receiver", [[400]], indirect=True)
def test_a_refusal_is_not_retried(receiver: Receiver) -> None:
    result = deliver(receiver.url, {"batch": "x"}, None, policy=LOCAL, sleep=lambda s: None)
    assert (result.delivered, result.attempts, result.status_code, result.retryable) == (False, 1, 400, False)
    assert SIGNATURE_HEADER not in receiver.received[0][0], "no secret, no signature"


@pytest.mark.parametrize("receiver", [[500] * 10], indirect=True)
def test_delivery_gives_up_after_its_attempts(receiver: Receiver) -> None:
    result = deliver(receiver.url, {"batch": "x"}, SECRET, policy=LOCAL, attempts=3, sleep=lambda s: None)
    assert (result.delivered, result.attempts, result.status_code) == (False, 3, 500)
    assert "HTTP 500" in (result.error or "")


def test_a_private_receiver_is_refused_without_retrying(receiver: Receiver) -> None:
    result = deliver(receiver.url, {"batch": "x"}, SECRET, sleep=lambda s: pytest.fail("no retry"))
    assert not result.delivered and result.attempts == 1
    assert "not a public address" in (result.error or "")
    assert receiver.received == []
