"""Fetch images from URLs without being turned against the network we run in (SSRF).

The host is resolved first and every address it resolves to must be globally routable: loopback,
private, link-local (the cloud metadata service at 169.254.169.254), carrier-grade NAT, multicast,
reserved and unspecified addresses are refused, in any spelling (decimal or hex IPv4, IPv6, and
IPv4 inside IPv6: mapped, compatible, NAT64 and 6to4; site-local and local-use NAT64 prefixes).
The connection goes to the address that was checked, so a second DNS answer cannot redirect it;
redirects are followed by hand and each target is checked again. Bodies are capped in size, and
the whole exchange (connect, headers, body, redirects) in wall-clock time. Tests and local stacks
may allow named networks explicitly.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass, field
from threading import Event, Timer
from urllib.parse import SplitResult, urljoin, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class FetchError(Exception):
    """The URL cannot be fetched; the message says why."""


class BlockedAddress(FetchError):
    """The URL points at an address that is not public."""


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for fetching: size, time, redirects, and networks allowed besides public ones."""

    max_bytes: int = 32 * 1024 * 1024
    timeout: float = 20.0
    max_redirects: int = 3
    allowed_networks: tuple[IPNetwork, ...] = field(default_factory=tuple)
    user_agent: str = "kubeclassify/0.1"

    @classmethod
    def allowing(cls, *networks: str, **kwargs: object) -> FetchPolicy:
        """A policy that also allows these networks (e.g. '127.0.0.0/8' for a local test server)."""
        nets = tuple(ipaddress.ip_network(n) for n in networks)
        return cls(allowed_networks=nets, **kwargs)  # type: ignore[arg-type]

    def permits(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address):
            if address in _LOCAL_NAT64 or address.is_site_local:
                return any(address in net for net in self.allowed_networks)
            address = embedded_ipv4(address) or address
        if any(address in net for net in self.allowed_networks):
            return True
        return address.is_global and not address.is_multicast


# Translated and tunnelled IPv6 addresses carry an IPv4 address in fixed bits; a gateway that
# routes them reaches that IPv4 address, so it is the one that is checked.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the IPv4 address is the last 32 bits
_COMPATIBLE = ipaddress.IPv6Network("::/96")  # RFC 4291's deprecated IPv4-compatible addresses
# RFC 8215's local-use translation prefix may embed the IPv4 address in any of RFC 6052's layouts,
# and is never globally routed: refused unless allowed as a network.
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address that an IPv4-mapped, IPv4-compatible, NAT64 (64:ff9b::/96) or 6to4
    (2002::/16) address stands for; None for any other IPv6 address."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or address in _COMPATIBLE:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def resolve(host: str, port: int, policy: FetchPolicy) -> IPAddress:
    """The first address of `host`, after checking that every address it has is permitted."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise FetchError(f"cannot resolve {host!r}: {e.strerror}") from e
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    blocked = [a for a in addresses if not policy.permits(a)]
    if blocked or not addresses:
        raise BlockedAddress(
            f"{host!r} resolves to {blocked[0] if blocked else 'nothing'}, which is not a public address"
        )
    return addresses[0]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: IPAddress, timeout: float, expired: Event) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address
        self._expired = expired

    def _socket(self) -> socket.socket:
        sock = socket.create_connection((str(self._address), self.port), self.timeout)
        if self._expired.is_set():  # the deadline passed while connecting: the watchdog saw no socket
            sock.close()
            raise TimeoutError("the deadline passed while connecting")
        return sock

    def connect(self) -> None:
        self.sock = self._socket()


class _PinnedHTTPSConnection(_PinnedHTTPConnection, http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: IPAddress, timeout: float, expired: Event) -> None:
        http.client.HTTPSConnection.__init__(
            self, host, port, timeout=timeout, context=ssl.create_default_context()
        )
        self._address = address
        self._expired = expired

    def connect(self) -> None:
        self.sock = self._context.wrap_socket(self._socket(), server_hostname=self.host)  # type: ignore[attr-defined]


def _cut(conn: http.client.HTTPConnection, expired: Event) -> None:
    """The deadline: mark it, and shut the socket so that a read or write blocked on it returns."""
    expired.set()
    if conn.sock is not None:
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_RDWR)


@dataclass(frozen=True)
class Response:
    """One HTTP answer: status, headers (lower-cased names) and body (within the size limit)."""

    status: int
    headers: dict[str, str]
    body: bytes


def target(url: str, policy: FetchPolicy) -> tuple[SplitResult, int, IPAddress]:
    """The URL's parts, port and checked address; FetchError (BlockedAddress) when it may not be used."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"{url!r} is not an http(s) URL")
    if parts.username or parts.password:
        raise FetchError(f"{url!r} carries credentials; they are not sent")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as e:
        raise FetchError(f"{url!r} has an invalid port") from e
    return parts, port, resolve(parts.hostname, port, policy)


def request(
    method: str,
    url: str,
    policy: FetchPolicy | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    deadline: float | None = None,
) -> Response:
    """One request to a checked address, redirects not followed; any status comes back."""
    policy = policy or FetchPolicy()
    deadline = deadline if deadline is not None else time.monotonic() + policy.timeout
    parts, port, address = target(url, policy)
    assert parts.hostname is not None
    remaining = max(deadline - time.monotonic(), 0.1)
    cls = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    expired = Event()
    conn = cls(parts.hostname, port, address, remaining, expired)
    # One wall-clock deadline for the whole exchange: socket timeouts apply to each read alone, so a
    # peer trickling a byte at a time (headers or body) would otherwise hold the fetch for ever.
    watchdog = Timer(remaining, _cut, (conn, expired))
    watchdog.start()
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path, body=body, headers={"User-Agent": policy.user_agent, **(headers or {})})
        resp = conn.getresponse()
        length = resp.getheader("Content-Length")
        if length and length.isdigit() and int(length) > policy.max_bytes:
            raise FetchError(f"{url} is {length} bytes; the limit is {policy.max_bytes} bytes")
        chunks, size = [], 0
        while chunk := resp.read(64 * 1024):
            size += len(chunk)
            if size > policy.max_bytes:
                raise FetchError(f"{url} is larger than the limit of {policy.max_bytes} bytes")
            chunks.append(chunk)
        if expired.is_set():  # a read the watchdog cut short can look like the end of the body
            raise FetchError(f"{url} took longer than {policy.timeout:g}s")
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, b"".join(chunks))
    except (OSError, http.client.HTTPException) as e:
        if expired.is_set():
            raise FetchError(f"{url} took longer than {policy.timeout:g}s") from e
        raise FetchError(f"{url}: {e}") from e
    finally:
        watchdog.cancel()
        conn.close()


def fetch(url: str, policy: FetchPolicy | None = None) -> bytes:
    """The body of `url` (http or https), following checked redirects, within the policy's limits."""
    policy = policy or FetchPolicy()
    deadline = time.monotonic() + policy.timeout
    for _ in range(policy.max_redirects + 1):
        resp = request("GET", url, policy, headers={"Accept": "image/*,*/*;q=0.5"}, deadline=deadline)
        if resp.status in (301, 302, 303, 307, 308):
            location = resp.headers.get("location")
            if not location:
                raise FetchError(f"{url} redirects without a Location")
            url = urljoin(url, location)
            continue
        if resp.status != 200:
            raise FetchError(f"{url} answered HTTP {resp.status}")
        return resp.body
    raise FetchError(f"{url}: more than {policy.max_redirects} redirects")
