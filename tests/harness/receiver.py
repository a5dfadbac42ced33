"""A webhook receiver on loopback for the tests: keeps every POST, answers each with the next of
`codes` (then 204), and with `hold` waits for `release` before answering (HOLD_SECONDS at most, so
that a failing test ends)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kubeclassify.core.webhooks import DELIVERY_HEADER

HOLD_SECONDS = 30.0


class Receiver:
    def __init__(self, codes: list[int] | None = None, hold: bool = False) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.answered = 0
        self.codes = list(codes or [])
        self.release = threading.Event()
        if not hold:
            self.release.set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((dict(self.headers), body))
                outer.release.wait(HOLD_SECONDS)
                self.send_response(outer.codes.pop(0) if outer.codes else 204)
                self.end_headers()
                outer.answered += 1

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/batch"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivery_ids(self) -> set[str]:
        """The distinct delivery ids received. Delivery is at least once, so a run may arrive twice:
        wait on these, not on a count of POSTs."""
        return {headers[DELIVERY_HEADER] for headers, _ in list(self.received)}

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
