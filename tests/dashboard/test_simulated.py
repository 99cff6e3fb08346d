"""A server watching a desk on simulated time keeps that desk no more alive than one on the
host's clock: the mapping it reads the simulated time through holds no lock past its join."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import pytest

from bot4._cli.dashboard.server import ServeConfig, Server
from bot4.shm.lifecycle import remove_if_stale
from tests.helpers import creator_process

pytestmark = pytest.mark.processes


def test_a_crashed_desk_on_simulated_time_is_stale_though_watched(segment_name: str) -> None:
    creator = creator_process(segment_name, simulated=True)
    loop = asyncio.new_event_loop()
    server = Server(ServeConfig(name=segment_name, port=0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    try:
        loop.run_until_complete(server.start())
        thread.start()
        os.kill(creator.pid, signal.SIGKILL)
        creator.wait()
        assert remove_if_stale(segment_name, dry_run=True), "a crashed desk is not stale while a server watches it"
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
