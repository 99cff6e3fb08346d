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
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from bot4 import Core, make_plugin_manager
from bot4._cli.dashboard.server import ServeConfig, Server
from bot4.errors import SegmentExistsError
from bot4.shm.lifecycle import remove_if_stale
from tests.dashboard.conftest import start_serve

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


@pytest.fixture
def name() -> Iterator[str]:
    name = f"bot4-serve-{uuid.uuid4().hex[:10]}"
    yield name
    with contextlib.suppress(Exception):
        remove_if_stale(name)


def test_a_kill_after_the_segment_was_replaced_is_not_answered_done(name: str) -> None:
    """The desk ends and a new desk of the same name starts (a restart) before the server's
    next look: a kill must not be performed on the dead segment and answered 200 while the
    live desk trades on."""
    old = Core.create(name, plugins=make_plugin_manager(entry_points=False))
    running = _Running(name)
    try:
        old.close()
        old.unlink()
        with Core.create(name, plugins=make_plugin_manager(entry_points=False)) as new:
            status = _post(running.server.port, "kill", {"operator": "alice", "reason": "incident"})
            assert status != 200 or new.risk.kill_switch.active, "kill answered 200 but the live desk is not killed"
    finally:
        running.end()


def test_a_crashed_desk_can_be_created_again_while_served(name: str) -> None:
    """The desk's only process is killed while ``bot4 serve`` is attached: the server (an
    observer) keeps nothing alive, so the desk can be created again under its name."""
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from bot4 import Core, make_plugin_manager\n"
            f"c = Core.create({name!r}, plugins=make_plugin_manager(entry_points=False))\n"
            "print('ready', flush=True)\n"
            "time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout is not None and owner.stdout.readline().strip() == "ready"
    served = start_serve(name)
    try:
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        deadline = time.monotonic() + 10
        while True:
            try:
                again = Core.create(name, plugins=make_plugin_manager(entry_points=False))
            except SegmentExistsError:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"the crashed desk cannot be restarted while bot4 serve is attached "
                        f"(server still running: {served.proc.poll() is None})"
                    )
                time.sleep(0.2)
                continue
            again.close()
            again.unlink()
            break
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


def test_a_websocket_client_that_never_reads_does_not_hold_up_stop(name: str) -> None:
    """docs: "one that cannot take a state for 5 s is disconnected"; and a client that stops
    reading never holds up the server's stop (SIGTERM)."""
    with Core.create(name, plugins=make_plugin_manager(entry_points=False), max_symbols=64) as desk:
        desk.risk.set_equity(100_000.0)
        breakers = [desk.breaker(f"venue-{i:03d}") for i in range(100)]
        for i in range(64):
            desk.risk.on_price(f"SYM{i}/USDT", 100.0 + i)
        running = _Running(name)
        stalled = _stalled_ws(running.server.port)
        try:
            t0 = time.monotonic()
            k = 0
            while time.monotonic() - t0 < 8:  # breaker transitions: a state pushed for each
                b = breakers[k % len(breakers)]
                b.force_open("flap")
                time.sleep(0.01)
                b.reset("flap")
                time.sleep(0.01)
                k += 1
            time.sleep(6)  # past the 5 s the docs give a client that cannot keep up
            try:
                took = running.stop(20)
            except TimeoutError:
                pytest.fail("Server.stop() did not finish in 20 s with one stalled WebSocket client")
            assert took < 20
        finally:
            stalled.close()
            running.end()


def test_an_observer_keeps_no_desk_alive(name: str) -> None:
    """A desk whose creator died (without removing it) is stale though an observer is
    attached: ``bot4 clean`` may remove it; a worker attached instead keeps it."""
    from bot4 import ConfigError

    made = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os\nfrom bot4 import Core, make_plugin_manager\n"
            f"Core.create({name!r}, plugins=make_plugin_manager(entry_points=False))\n"
            "os._exit(0)\n",  # gone without closing or removing it
        ],
        timeout=60,
    )
    assert made.returncode == 0
    with pytest.raises(ConfigError):
        Core.attach(name, observer="yes")  # type: ignore[arg-type]
    watcher = Core.attach(name, observer=True)
    try:
        assert [w.observer for w in watcher.workers()] == [True]
        assert remove_if_stale(name, dry_run=True)
        worker = Core.attach(name)
        try:
            assert not remove_if_stale(name, dry_run=True)
        finally:
            worker.close()
        assert remove_if_stale(name)
    finally:
        watcher.close()
