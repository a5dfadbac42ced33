"""The SSRF guard: private targets are refused in every spelling, redirects are re-checked,
sizes and schemes are limited; public-only is the default."""

from __future__ import annotations

import http.server
import threading
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


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        port = self.server.server_address[1]
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
