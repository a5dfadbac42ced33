"""Signed webhooks: the operator and the gateway send the same JSON summary the same way.

The signature header is `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + raw body>`: the receiver
recomputes it with the shared secret, compares in constant time, and refuses old timestamps, so a
captured request cannot be replayed later. `X-KubeClassify-Delivery` names the delivery: the same
on every try of it, so a receiver that sees one twice (a retry after a lost answer, or a sender that
died before it recorded the answer) drops the second. The URL goes through the SSRF guard on every
attempt.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import stamina

from kubeclassify.core.fetch import BlockedAddress, FetchError, FetchPolicy, request

SIGNATURE_HEADER = "X-KubeClassify-Signature"
EVENT_HEADER = "X-KubeClassify-Event"
DELIVERY_HEADER = "X-KubeClassify-Delivery"
TOLERANCE_SECONDS = 300


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header's value for `body` sent at `timestamp`."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: bytes, header: str, body: bytes, now: float | None = None) -> bool:
    """Whether `header` signs `body` with `secret`, at a time within the tolerance of `now`."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields.get("t", ""))
    except ValueError:
        return False
    if abs((now if now is not None else time.time()) - timestamp) > TOLERANCE_SECONDS:
        return False
    expected = signature(secret, timestamp, body)
    return hmac.compare_digest(expected.encode(), f"t={timestamp},v1={fields.get('v1', '')}".encode())


@dataclass(frozen=True)
class Delivery:
    """How a webhook went: attempts, the last status code, and why it failed if it did."""

    time: dt.datetime
    attempts: int
    delivered: bool
    status_code: int | None = None
    error: str | None = None
    retryable: bool = False  # a network error, 429 or 5xx: another try may succeed


class _TryAgain(Exception):
    """A try that another may better: a network error, 429 or 5xx."""

    def __init__(self, status: int | None, error: str) -> None:
        super().__init__(error)
        self.status, self.error = status, error


def deliver(
    url: str,
    payload: Mapping[str, Any],
    secret: bytes | None,
    event: str = "batch.finished",
    policy: FetchPolicy | None = None,
    attempts: int = 5,
    backoff: float = 1.0,
    delivery: str | None = None,
) -> Delivery:
    """POST `payload` as JSON, signed when there is a secret and named by `delivery` (the same for
    every sender of the same event); tried again (stamina: exponential backoff from `backoff`
    seconds, with jitter) on network errors, 429 and 5xx. A refused address or another 4xx is not
    tried again."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str).encode()
    tried = 0
    try:
        for attempt in stamina.retry_context(
            on=_TryAgain, attempts=attempts, timeout=None, wait_initial=backoff, wait_jitter=backoff
        ):
            with attempt:
                tried = attempt.num
                return _post(url, body, secret, event, policy, delivery, tried)
    except _TryAgain as e:
        return Delivery(_now(), tried, False, e.status, e.error, retryable=True)
    raise AssertionError("stamina ends with an answer or the last error")  # pragma: no cover


def _post(
    url: str,
    body: bytes,
    secret: bytes | None,
    event: str,
    policy: FetchPolicy | None,
    delivery: str | None,
    attempt: int,
) -> Delivery:
    """One try: its Delivery, or _TryAgain."""
    headers = {"Content-Type": "application/json", EVENT_HEADER: event}
    if delivery:
        headers[DELIVERY_HEADER] = delivery
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, int(time.time()), body)
    try:
        resp = request("POST", url, policy, body=body, headers=headers)
    except BlockedAddress as e:
        return Delivery(_now(), attempt, False, None, str(e))
    except FetchError as e:
        raise _TryAgain(None, str(e)) from e
    if 200 <= resp.status < 300:
        return Delivery(_now(), attempt, True, resp.status)
    error = f"the receiver answered HTTP {resp.status}"
    if resp.status == 429 or resp.status >= 500:
        raise _TryAgain(resp.status, error)
    return Delivery(_now(), attempt, False, resp.status, error)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)
