"""The lifecycle the tests' local HTTP servers share: a ThreadingHTTPServer on 127.0.0.1 (port 0
picks a free one unless a subclass binds another), daemon request threads, ``serve_forever`` on
a daemon thread, ``close()`` to shut it down, and use as a context manager.

A subclass says how requests are answered by returning a handler class from
``_handler_class()``; ``QuietHandler`` is a base for those that logs nothing.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler on HTTP/1.1 that writes no access log."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass


class LoopbackServer(ABC):
    poll_interval: float = 0.5  # serve_forever's, in seconds
    thread_name_prefix: str | None = None  # the thread is "<prefix>-<port>"; None: Python's name

    def __init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @abstractmethod
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        """The handler class that answers this server's requests."""

    def _serve(self, port: int = 0) -> int:
        """Listen on 127.0.0.1:``port`` and serve on a daemon thread; returns the port bound."""
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._server.daemon_threads = True
        bound = self._server.server_address[1]
        name = f"{self.thread_name_prefix}-{bound}" if self.thread_name_prefix else None
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": self.poll_interval},
            daemon=True,
            name=name,
        )
        self._thread.start()
        return bound

    def _shutdown(self) -> None:
        """Stop serving and free the port (connections to it are refused); again is harmless."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def start(self) -> Self:
        self._serve()
        return self

    def close(self) -> None:
        self._shutdown()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        assert self._server is not None, f"start() the {type(self).__name__} first"
        return self._server.server_address[1]

    def address(self, path: str = "") -> str:
        """``http://127.0.0.1:<port>`` followed by ``path``."""
        return f"http://127.0.0.1:{self.port}{path}"
