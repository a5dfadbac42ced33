"""The gateway's cache of verified access tokens: only verified tokens enter it, a token leaves it
when it expires, and it stays bounded, the least recently used token dropped first."""

from __future__ import annotations

import time

from kubeclassify.gateway.security import VerifiedTokens, create_token

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def test_a_verified_token_is_remembered_and_a_forged_one_is_not() -> None:
    tokens = VerifiedTokens(SECRET)
    token, _ = create_token("alice", "user", SECRET, 60)
    first = tokens.claims(token)
    assert first is not None and first.username == "alice"
    assert tokens.claims(token) is first  # no second verification
    forged, _ = create_token("alice", "admin", "another-secret-that-is-also-long-enough", 60)
    assert tokens.claims(forged) is None
    assert tokens.claims(token[:-2] + ("AA" if token[-2:] != "AA" else "BB")) is None
    assert len(tokens._claims) == 1  # noqa: SLF001


def test_a_remembered_token_still_expires() -> None:
    tokens = VerifiedTokens(SECRET)
    # JWT times are whole seconds: a 2 s token stays valid for at least 1 s after it is made.
    token, _ = create_token("alice", "user", SECRET, 2)
    assert tokens.claims(token) is not None
    time.sleep(2.1)
    assert tokens.claims(token) is None and token not in tokens._claims  # noqa: SLF001


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    tokens = VerifiedTokens(SECRET, size=2)
    ann, bob, cid = (create_token(name, "user", SECRET, 60)[0] for name in ("ann", "bob", "cid"))
    for token in (ann, bob, ann, cid):  # ann used again after bob: bob is dropped for cid
        assert tokens.claims(token) is not None
    assert set(tokens._claims) == {ann, cid}  # noqa: SLF001
