"""FAKE, for retry tests only: a loopback HTTP server that answers a scripted number of codec
requests with 503 (+ ``Retry-After``), then relays every further request to the real codec server
unchanged. It records when each request arrived, so tests can check the client's waits.

Everything else in the suite talks to the real server directly.
"""

from __future__ import annotations

import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


class FakeUnavailableThenRelay:
    def __init__(
        self,
        upstream: str,
        *,
        failures: int,
        retry_after: str | None = "1",
        status: int = 503,
    ) -> None:
        self.failures = failures
        self.arrivals: list[float] = []
        self.request_ids: list[str] = []
        up = urlsplit(upstream)
        assert up.hostname == "127.0.0.1"
        assert up.port is not None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with lock:
                    fake.arrivals.append(time.monotonic())
                    fake.request_ids.append(self.headers.get("X-Request-Id", ""))
                    n = len(fake.arrivals)
                if n <= fake.failures:
                    data = b'{"error":{"code":"kms-unavailable","message":"fake outage"}}'
                    self.send_response(status)
                    if retry_after is not None:
                        self.send_header("Retry-After", retry_after)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", up.port, timeout=10)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    conn.request("POST", self.path, body=body, headers=headers)
                    reply = conn.getresponse()
                    data = reply.read()
                    self.send_response(reply.status)
                    for k in ("Content-Type", "X-Request-Id", "Retry-After", "WWW-Authenticate"):
                        v = reply.getheader(k)
                        if v is not None:
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    conn.close()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
