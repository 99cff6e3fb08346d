"""A loopback TCP proxy between one host and Redis that the tests drive into faults.

Modes: ``"pass"`` forwards both ways; ``"pause"`` stops forwarding (bytes wait in the
proxy, connections stay open, as with a stalled peer); ``"blackhole"`` reads and drops
everything (a network that loses packets without resetting anything); ``"cut"`` closes
every connection and refuses new ones until the mode changes. ``delay`` adds seconds to
every chunk forwarded. Started by the tests, on 127.0.0.1, stopped by :meth:`close`.
"""

from __future__ import annotations

import socket
import threading
import time

__all__ = ["FaultProxy"]

MODES = ("pass", "pause", "blackhole", "cut")


class FaultProxy:
    """``127.0.0.1:<port>`` -> ``upstream``; see the module for the modes."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream = ("127.0.0.1", upstream_port)
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._mode = "pass"
        self.delay = 0.0
        self._changed = threading.Condition()
        self._conns: set[socket.socket] = set()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="fault-proxy").start()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def mode(self) -> str:
        return self._mode

    def set(self, mode: str) -> None:
        """Change the mode (``"cut"`` closes every open connection at once)."""
        assert mode in MODES, mode
        with self._changed:
            self._mode = mode
            if mode == "cut":
                for conn in list(self._conns):
                    _close(conn)
                self._conns.clear()
            self._changed.notify_all()

    def close(self) -> None:
        self._closed = True
        self.set("cut")
        _close(self._listener)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._mode == "cut":
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                _close(client)
                continue
            with self._changed:
                self._conns |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                with self._changed:
                    while self._mode == "pause" and not self._closed:
                        self._changed.wait(0.05)
                data = src.recv(65536)
                if not data:
                    break
                if self._mode == "blackhole":
                    continue
                with self._changed:
                    while self._mode == "pause" and not self._closed:
                        self._changed.wait(0.05)
                if self._mode != "pass":
                    break
                if self.delay:
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(src)
            _close(dst)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
