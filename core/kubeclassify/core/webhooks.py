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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

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


def deliver(
    url: str,
    payload: Mapping[str, Any],
    secret: bytes | None,
    event: str = "batch.finished",
    policy: FetchPolicy | None = None,
    attempts: int = 5,
    backoff: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    delivery: str | None = None,
) -> Delivery:
    """POST `payload` as JSON, signed when there is a secret and named by `delivery` (the same for
    every sender of the same event); retried with exponential backoff on network errors, 429 and
    5xx. A refused address or another 4xx is not retried."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str).encode()
    status: int | None = None
    error: str | None = None
    for attempt in range(1, attempts + 1):
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
            status, error = None, str(e)
        else:
            status = resp.status
            if 200 <= status < 300:
                return Delivery(_now(), attempt, True, status)
            error = f"the receiver answered HTTP {status}"
            if status != 429 and status < 500:
                return Delivery(_now(), attempt, False, status, error)
        if attempt < attempts:
            sleep(backoff * 2 ** (attempt - 1))
    return Delivery(_now(), attempts, False, status, error, retryable=True)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)
