from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot4 import Core, ManualClock, make_plugin_manager
from bot4.journal.recorder import Recorder
from tests.risk.conftest import NO_LIMITS


@contextlib.contextmanager
def journaled_core(path: Path, clock: ManualClock | None = None, **kw: Any) -> Iterator[tuple[Core, Recorder]]:
    """A core journaling to ``path``, with a recorder in this process (drained by the test)."""
    with Core.create(
        clock=clock, plugins=make_plugin_manager(entry_points=False), journal=path, journal_recorder=False, **kw
    ) as core:
        recorder = Recorder(core._segment, path)
        recorder.beat()
        try:
            yield core, recorder
        finally:
            recorder.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "journal.db"


@pytest.fixture
def desk(db: Path, clock: ManualClock) -> Iterator[tuple[Core, Recorder]]:
    with journaled_core(db, clock) as (core, recorder):
        core.risk.configure(NO_LIMITS)
        core.risk.set_equity(10_000.0)
        core.risk.on_price("BTC/USDT", 100.0)
        recorder.drain()
        yield core, recorder


@contextlib.contextmanager
def unwritable(*paths: Path) -> Iterator[None]:
    """Make ``paths`` refuse writes, also to root (the immutable attribute), then writable again."""
    root = os.geteuid() == 0
    modes = {p: p.stat().st_mode for p in paths}
    for p in paths:
        if root:
            subprocess.run(["chattr", "+i", str(p)], check=True)
        else:
            p.chmod(0o444)
    try:
        yield
    finally:
        for p in paths:
            if root:
                subprocess.run(["chattr", "-i", str(p)], check=True)
            else:
                p.chmod(modes[p])
