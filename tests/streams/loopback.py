"""A venue's stream server on 127.0.0.1 that a test scripts: sends, garbage, drops, silence."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed


class Loopback:
    """Serves one connection at a time; the test sends to the current one and breaks it at will."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.received: list[str | bytes] = []
        self.connection: ServerConnection | None = None
        self.connected = asyncio.Event()
        self._server: Server | None = None
        self.port = 0

    async def start(self, port: int = 0) -> None:
        self._server = await serve(
            self._handler, "127.0.0.1", port, compression=None, ping_interval=None, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def _handler(self, connection: ServerConnection) -> None:
        self.paths.append(connection.request.path if connection.request else "")
        self.connection = connection
        self.connected.set()
        try:
            with contextlib.suppress(ConnectionClosed):  # a client gone mid-frame: its connection is over
                async for message in connection:  # what clients send (their subscriptions), kept
                    self.received.append(message)
        finally:
            if self.connection is connection:
                self.connection = None
                self.connected.clear()

    async def wait_connection(self, count: int, timeout: float = 30.0) -> None:
        """Until the ``count``-th connection is open."""
        async with asyncio.timeout(timeout):
            while len(self.paths) < count or self.connection is None:
                await asyncio.sleep(0.005)

    async def send(self, message: str | bytes) -> None:
        assert self.connection is not None, "no client connected"
        await self.connection.send(message)

    def drop_mid_frame(self) -> None:
        """Write half of a frame, then cut the TCP connection (a venue's process dying)."""
        connection = self.connection
        assert connection is not None
        transport: Any = connection.transport
        transport.write(b"\x81\x7e\x01\x00" + b'{"u":1')  # a 256-byte text frame, cut short
        transport.abort()

    def silence(self) -> None:
        """Stop reading: pings go unanswered and nothing is sent (a venue that hangs)."""
        connection = self.connection
        assert connection is not None
        transport: Any = connection.transport
        transport.pause_reading()
