"""What every fake service shares: a threaded HTTP server on a free loopback port, started and stopped cleanly."""

from __future__ import annotations

import socket
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

Self = TypeVar("Self", bound="LoopbackFake")


class LoopbackFake:
    """Lifecycle of a fake: `start()`/`stop()` or a `with` block; `url` is `http://127.0.0.1:<port>`.

    Subclasses set `handler` (their request handler class) and `name`, and call `super().__init__()`.
    Handlers reach the fake as `self.server.fake`; bugs in a fake land in its `errors`.
    """

    handler: type[BaseHTTPRequestHandler]
    name = "fake"

    def __init__(self) -> None:
        self.errors: list[str] = []
        self._lock = threading.RLock()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self: Self) -> Self:
        if self._server is not None:
            return self
        self._before_start()
        self._server = _Server(("127.0.0.1", 0), self.handler, fake=self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._before_stop()
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:  # unblock handlers waiting on an idle keep-alive connection
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()  # joins the handler threads
        if thread is not None:
            thread.join()
        self._server = self._thread = None

    def _before_start(self) -> None:
        """Hook: reset per-run state."""

    def _before_stop(self) -> None:
        """Hook: wake handlers that wait on something other than their connection."""

    def __enter__(self: Self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"the {self.name} server is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True  # server_close() joins the handler threads
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *, fake: LoopbackFake) -> None:
        self.fake = fake
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.fake._lock:
            self.fake._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.fake._lock:
            self.fake._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):  # a connection closed under us (client timeout, stop())
            return
        self.fake.errors.append(traceback.format_exc())
