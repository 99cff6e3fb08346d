"""The server's life against its segment's and its clients': a crashed desk, a replaced
segment, a WebSocket client that never reads."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import threading
import time

import pytest

from bot4 import Core, make_plugin_manager
from bot4._cli.dashboard.server import ServeConfig, Server
from bot4.errors import SegmentExistsError
from tests.dashboard.conftest import start_serve
from tests.helpers import creator_process, wait_for

pytestmark = pytest.mark.processes
TOKEN = "control-token-0123456789"


class _Running:
    """A Server on an event loop of its own thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = Server(ServeConfig(name=name, port=0, token=TOKEN))
        self.loop.run_until_complete(self.server.start())
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def stop(self, timeout: float) -> float:
        """Stop the server; the seconds it took (raises TimeoutError past ``timeout``)."""
        t0 = time.monotonic()
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(timeout)
        return time.monotonic() - t0

    def end(self) -> None:
        with contextlib.suppress(Exception):
            self.stop(90)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _post(port: int, action: str, body: dict[str, object]) -> int:
    data = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            (
                f"POST /api/control/{action} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n"
            ).encode()
            + data
        )
        return int(s.recv(100).split()[1])


def test_a_kill_after_the_segment_was_replaced_is_not_answered_done(segment_name: str) -> None:
    """The desk ends and a new desk of the same name starts (a restart) before the server's
    next look: a kill must not be performed on the dead segment and answered 200 while the
    live desk trades on."""
    old = Core.create(segment_name, plugins=make_plugin_manager(entry_points=False))
    running = _Running(segment_name)
    try:
        old.close()
        old.unlink()
        with Core.create(segment_name, plugins=make_plugin_manager(entry_points=False)) as new:
            status = _post(running.server.port, "kill", {"operator": "alice", "reason": "incident"})
            assert status != 200 or new.risk.kill_switch.active, "kill answered 200 but the live desk is not killed"
    finally:
        running.end()


def test_a_crashed_desk_can_be_created_again_while_served(segment_name: str) -> None:
    """The desk's only process is killed while ``bot4 serve`` is attached: the server (an
    observer) keeps nothing alive, so the desk can be created again under its name."""
    owner = creator_process(segment_name)
    served = start_serve(segment_name)
    try:
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)

        def created_again() -> bool:
            try:
                again = Core.create(segment_name, plugins=make_plugin_manager(entry_points=False))
            except SegmentExistsError:
                return False
            again.close()
            again.unlink()  # this test's own desk
            return True

        wait_for(created_again, timeout=10, what="the crashed desk created again while bot4 serve watched it")
        served.proc.wait(30)  # and the server ended by itself: nothing of that desk is left to show
        assert served.proc.returncode == 0
        assert "every process of the desk has ended" in "".join(served.output) or "removed" in "".join(served.output)
    finally:
        served.stop()
        if owner.poll() is None:
            owner.kill()
            owner.wait()


def _stalled_ws(port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    return s  # never read from again


def test_a_websocket_client_that_never_reads_does_not_hold_up_stop(segment_name: str) -> None:
    """docs: "one that cannot take a state for 5 s is disconnected"; and a client that stops
    reading never holds up the server's stop (SIGTERM)."""
    with Core.create(segment_name, plugins=make_plugin_manager(entry_points=False), max_symbols=64) as desk:
        desk.risk.set_equity(100_000.0)
        breakers = [desk.breaker(f"venue-{i:03d}") for i in range(100)]
        for i in range(64):
            desk.risk.on_price(f"SYM{i}/USDT", 100.0 + i)
        running = _Running(segment_name)
        stalled = _stalled_ws(running.server.port)
        try:
            wait_for(lambda: len(running.server._clients) == 1, timeout=30, what="the client's handshake")
            deadline = time.monotonic() + 60
            k = 0
            while running.server._clients:  # a state pushed for each transition, until it is cut
                assert time.monotonic() < deadline, "a client that does not read was never cut"
                b = breakers[k % len(breakers)]
                b.force_open("flap")
                time.sleep(0.01)  # paces the transitions (each its own push); it waits on nothing
                b.reset("flap")
                time.sleep(0.01)
                k += 1
            try:
                took = running.stop(20)
            except TimeoutError:
                pytest.fail("Server.stop() did not finish in 20 s with one stalled WebSocket client")
            assert took < 20
        finally:
            stalled.close()
            running.end()
