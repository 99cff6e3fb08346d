from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot4 import Core, ManualClock, make_plugin_manager
from tests.segment_watch import SegmentWatch, remove_leaked


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1000.0)


@pytest.fixture
def core(clock: ManualClock) -> Iterator[Core]:
    with Core.create(clock=clock, plugins=make_plugin_manager(entry_points=False)) as c:
        yield c


@pytest.fixture(scope="session", autouse=True)
def no_segment_left_behind() -> Iterator[None]:
    # Only segments this run made count: a live desk on the same host is never touched.
    watch = SegmentWatch()
    with watch.observing_children():
        yield
    leaked = remove_leaked(watch)
    assert not leaked, f"tests left segments behind: {leaked}"
