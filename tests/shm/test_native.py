"""The native atomic primitives."""

from __future__ import annotations

import mmap

import pytest

from bot4 import SegmentError
from bot4.shm import _native


@pytest.fixture
def region() -> _native.Region:
    return _native.Region(mmap.mmap(-1, 64))


def test_load_store_cas_add(region: _native.Region) -> None:
    assert region.nwords == 8
    region.store(3, -7)
    assert region.load(3) == -7
    assert region.cas(3, -7, 10) is True
    assert region.cas(3, -7, 11) is False
    assert region.load(3) == 10
    assert region.add(3, 5) == 15
    region.storef(4, 0.35)
    assert region.loadf(4) == 0.35


def test_out_of_range_index_is_an_error(region: _native.Region) -> None:
    with pytest.raises(ValueError, match="outside the segment"):
        region.load(8)
    with pytest.raises(ValueError):
        region.store(-1, 0)


def test_released_region_refuses_access(region: _native.Region) -> None:
    region.release()
    with pytest.raises(SegmentError, match="closed"):
        region.load(0)


def test_monotonic_clock_is_host_wide_and_monotonic() -> None:
    import time

    a = _native.monotonic_ns()
    b = time.monotonic_ns()
    c = _native.monotonic_ns()
    assert a <= b <= c
