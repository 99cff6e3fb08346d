from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest

from bot4 import Bot4Error, Core, ManualClock, make_plugin_manager
from bot4.shm.lifecycle import remove_if_stale
from tests.segment_watch import SegmentWatch, remove_leaked


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1000.0)


@pytest.fixture
def core(clock: ManualClock) -> Iterator[Core]:
    with Core.create(clock=clock, plugins=make_plugin_manager(entry_points=False)) as c:
        yield c


@pytest.fixture
def segment_name() -> Iterator[str]:
    """A segment name no other test or desk uses; the segment is removed after the test if its
    processes are all dead (the test's own: the name is this test's alone)."""
    name = f"bot4-test-{uuid.uuid4().hex[:12]}"
    yield name
    with contextlib.suppress(Bot4Error):
        remove_if_stale(name)


@pytest.fixture(scope="session", autouse=True)
def no_segment_left_behind() -> Iterator[None]:
    # Only segments this run made count: a live desk on the same host is never touched.
    watch = SegmentWatch()
    with watch.observing_children():
        yield
    leaked = remove_leaked(watch)
    assert not leaked, f"tests left segments behind: {leaked}"
