"""A total deadline for one blocking httpx request.

httpx's `timeout` bounds each read, not the request: a server that trickles one byte a
second never trips it. `Deadline` bounds the whole exchange. A watchdog timer shuts down
the request's socket when the time is up, which ends a read blocked anywhere (headers or
body); the sockets are learnt from httpx's `trace` extension (new connections) and from the
response's `network_stream` (a reused keep-alive connection, once its headers are in).
`read_body` also checks the clock between chunks, so a body trickle ends even where no
socket could be learnt (the overshoot is then at most one read timeout).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any


class DeadlineExceeded(Exception):
    """The deadline passed before the answer was complete."""


class Deadline:
    def __init__(self, at: float):
        """`at`: a time.monotonic() value."""
        self.at = at
        self.fired = False
        self._done = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, at - time.monotonic()), self._fire)
        self._timer.daemon = True

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def __enter__(self) -> "Deadline":
        self._timer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()

    # httpx request extension: {"trace": deadline.trace}
    def trace(self, event: str, info: dict[str, Any]) -> None:
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            self.watch(info.get("return_value"))

    def watch(self, stream: Any) -> None:
        """Abort this network stream (an httpcore stream) when the deadline passes."""
        sock = None
        try:
            sock = stream.get_extra_info("socket") if stream is not None else None
        except Exception:  # pragma: no cover - a transport without sockets (tests' mocks)
            sock = None
        if sock is None:
            return
        with self._lock:
            if self.fired:
                _shutdown(sock)
            elif not self._done:
                self._sockets.append(sock)

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            for sock in self._sockets:
                _shutdown(sock)

    def read_body(self, response: Any) -> bytes:
        """The whole (decoded) body of a streamed httpx response, or DeadlineExceeded."""
        self.watch(response.extensions.get("network_stream"))
        chunks = []
        for chunk in response.iter_bytes():
            chunks.append(chunk)
            if self.fired or self.remaining() <= 0:
                raise DeadlineExceeded
        return b"".join(chunks)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
