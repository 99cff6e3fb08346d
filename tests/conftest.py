from __future__ import annotations

import glob
import os
from collections.abc import Iterator

import pytest

from bot4 import Core, ManualClock, make_plugin_manager


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1000.0)


@pytest.fixture
def core(clock: ManualClock) -> Iterator[Core]:
    with Core.create(clock=clock, plugins=make_plugin_manager(entry_points=False)) as c:
        yield c


@pytest.fixture(scope="session", autouse=True)
def no_segment_left_behind() -> Iterator[None]:
    before = set(glob.glob("/dev/shm/bot4-*"))
    yield
    leaked = set(glob.glob("/dev/shm/bot4-*")) - before
    for path in leaked:
        os.unlink(path)
    assert not leaked, f"tests left segments behind: {sorted(leaked)}"
