"""A real HTTP server on 127.0.0.1 that receives webhooks for tests.

It records every request (method, path, headers, raw body bytes, arrival time) and answers from a
script: ``respond_with(500, 500, 200)`` makes the next three answers 500, 500 and 200; after the
script runs out it answers ``default_status``. ``headers_for`` adds headers to scripted answers
(``Retry-After``). Nothing about signatures lives here: tests verify them themselves.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from tests.support.loopback import LoopbackServer, QuietHandler


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    at: float


@dataclass
class _Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class WebhookReceiver(LoopbackServer):
    def __init__(self, default_status: int = 200):
        super().__init__()
        self.default_status = default_status
        self.requests: list[Received] = []
        self._script: deque[_Answer] = deque()
        self._lock = threading.Lock()

    # --- control ---------------------------------------------------------------------------------

    def _handler_class(self) -> type[QuietHandler]:
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                receiver._handle(self)

            def do_GET(self) -> None:
                receiver._handle(self)

        return Handler

    def url(self, path: str = "/hooks/reelcast") -> str:
        return self.address(path)

    def respond_with(self, *statuses: int, body: bytes = b"", headers: dict | None = None) -> None:
        with self._lock:
            for status in statuses:
                self._script.append(_Answer(status, body, dict(headers or {})))

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.01)
        raise AssertionError(f"expected {count} requests, got {len(self.requests)}")

    # --- the server side -------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self._lock:
            self.requests.append(
                Received(
                    method=handler.command,
                    path=handler.path,
                    headers={k.lower(): v for k, v in handler.headers.items()},
                    body=body,
                    at=time.time(),
                )
            )
            answer = self._script.popleft() if self._script else _Answer(self.default_status)
        payload = answer.body or f'{{"status": {answer.status}}}'.encode()
        handler.send_response(answer.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        for name, value in answer.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(payload)
