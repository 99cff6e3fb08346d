"""A server watching a desk on simulated time keeps that desk no more alive than one on the
host's clock: the mapping it reads the simulated time through holds no lock past its join."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator

import pytest

from bot4._cli.dashboard.server import ServeConfig, Server
from bot4.shm.lifecycle import remove_if_stale

pytestmark = pytest.mark.processes
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def name() -> Iterator[str]:
    name = f"bot4-r2-sim-{uuid.uuid4().hex[:10]}"
    yield name
    with contextlib.suppress(Exception):
        remove_if_stale(name)


def test_a_crashed_desk_on_simulated_time_is_stale_though_watched(name: str) -> None:
    code = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {ROOT!r})
        from bot4 import Core, ManualClock, make_plugin_manager
        core = Core.create({name!r}, clock=ManualClock(), plugins=make_plugin_manager(entry_points=False))
        core.heartbeat()
        print("ready", flush=True)
        time.sleep(600)
        """
    )
    creator = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    loop = asyncio.new_event_loop()
    server = Server(ServeConfig(name=name, port=0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    try:
        assert creator.stdout is not None and creator.stdout.readline().strip() == "ready"
        loop.run_until_complete(server.start())
        thread.start()
        os.kill(creator.pid, signal.SIGKILL)
        creator.wait()
        assert remove_if_stale(name, dry_run=True), "a crashed desk is not stale while a server watches it"
    finally:
        if creator.poll() is None:
            creator.kill()
            creator.wait()
        if thread.is_alive():
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result(30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
        else:
            loop.run_until_complete(server.stop())
        loop.close()
