"""The SSRF guard: private targets are refused in every spelling, redirects are re-checked,
sizes and schemes are limited; public-only is the default."""

from __future__ import annotations

import http.server
import ipaddress
import threading
import time
from collections.abc import Iterator

import pytest

from kubeclassify.core.fetch import BlockedAddress, FetchError, FetchPolicy, fetch


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost:8080/x.jpg",
        "http://[::1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://017700000001/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fe80::1]/",
        "http://224.0.0.1/",
        # IPv6 forms that embed a private IPv4 address, and deprecated or local-use prefixes
        "http://[64:ff9b::7f00:1]/",  # NAT64 of 127.0.0.1
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
        "http://[64:ff9b:1::a00:1]/",  # local-use NAT64 (RFC 8215)
        "http://[2002:a00:1::1]/",  # 6to4 of 10.0.0.1
        "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
        "http://[::7f00:1]/",  # IPv4-compatible 127.0.0.1
        "http://[::a9fe:a9fe]/",  # IPv4-compatible 169.254.169.254
        "http://[fec0::1]/",  # site-local
    ],
)
def test_non_public_targets_are_refused(url: str) -> None:
    with pytest.raises(BlockedAddress, match="not a public address"):
        fetch(url)


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/x", "gopher://x/", "http:///nohost"]
)
def test_only_http_urls(url: str) -> None:
    with pytest.raises(FetchError, match="not an http"):
        fetch(url)


def test_credentials_in_urls_are_refused() -> None:
    with pytest.raises(FetchError, match="credentials"):
        fetch("http://user:pw@example.com/")


TRICKLES = 40  # pieces a trickling route sends, one every 0.1 s: 4 s in all


class _Handler(http.server.BaseHTTPRequestHandler):
    finished: dict[str, bool] = {}  # path -> whether a trickle got to its end

    def trickle(self, pieces: list[bytes]) -> None:
        try:
            for piece in pieces:
                self.wfile.write(piece)
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:  # the client hung up
            self.finished[self.path] = False
        else:
            self.finished[self.path] = True

    def do_GET(self) -> None:  # noqa: N802
        port = self.server.server_address[1]
        if self.path == "/trickle-headers":
            lines = [f"X-Slow-{i}: 1\r\n".encode() for i in range(TRICKLES)]
            self.trickle([b"HTTP/1.1 200 OK\r\n", *lines, b"Content-Length: 2\r\n\r\nok"])
            return
        if self.path == "/trickle-body":
            self.trickle([b"HTTP/1.1 200 OK\r\nContent-Length: 640\r\n\r\n"] + [b"x" * 16] * TRICKLES)
            return
        routes = {
            "/image.jpg": (200, {}, b"\xff\xd8 jpeg bytes"),
            "/big": (200, {}, b"x" * 5000),
            "/missing": (404, {}, b""),
            "/to-metadata": (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
            "/to-image": (302, {"Location": f"http://127.0.0.1:{port}/image.jpg"}, b""),
            "/loop": (302, {"Location": "/loop"}, b""),
        }
        status, headers, body = routes.get(self.path, (404, {}, b""))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_local_server_is_refused_unless_allowed(server: str) -> None:
    with pytest.raises(BlockedAddress):
        fetch(f"{server}/image.jpg")
    local = FetchPolicy.allowing("127.0.0.0/8")
    assert fetch(f"{server}/image.jpg", local) == b"\xff\xd8 jpeg bytes"
    assert fetch(f"{server}/to-image", local) == b"\xff\xd8 jpeg bytes"


def test_redirects_are_checked_again(server: str) -> None:
    local = FetchPolicy.allowing("127.0.0.0/8")
    with pytest.raises(BlockedAddress, match="169.254.169.254"):
        fetch(f"{server}/to-metadata", local)
    with pytest.raises(FetchError, match="more than 3 redirects"):
        fetch(f"{server}/loop", local)


def test_limits_and_errors(server: str) -> None:
    with pytest.raises(FetchError, match="the limit is 1000 bytes"):
        fetch(f"{server}/big", FetchPolicy.allowing("127.0.0.0/8", max_bytes=1000))
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch(f"{server}/missing", FetchPolicy.allowing("127.0.0.0/8"))


@pytest.mark.parametrize("path", ["/trickle-headers", "/trickle-body"])
def test_one_deadline_for_the_whole_exchange(server: str, path: str) -> None:
    """A peer that sends a little at a time never waits out a read timeout: the fetch's own deadline
    (0.5 s here) ends the exchange, headers or body, long before the peer would finish (4 s)."""
    with pytest.raises(FetchError, match="took longer than 0.5s"):
        fetch(f"{server}{path}", FetchPolicy.allowing("127.0.0.0/8", timeout=0.5))
    deadline = time.monotonic() + 10
    while path not in _Handler.finished and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _Handler.finished.pop(path) is False, "the client hung up before the trickle ended"


@pytest.mark.parametrize(
    ("address", "permitted"),
    [
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
        ("2002:808:808::1", True),  # 6to4 of 8.8.8.8
        ("64:ff9b::a00:1", False),
        ("2002:c0a8:101::1", False),  # 6to4 of 192.168.1.1
        ("::ffff:a9fe:a9fe", False),
        ("fec0::1", False),
        ("2606:4700:4700::1111", True),
    ],
)
def test_ipv6_is_judged_by_the_ipv4_address_it_carries(address: str, permitted: bool) -> None:
    assert FetchPolicy().permits(ipaddress.ip_address(address)) is permitted
