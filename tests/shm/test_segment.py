"""The segment: create/attach, header checks, errors, permissions, lifetime."""

from __future__ import annotations

import multiprocessing as mp
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from bot4 import (
    Bot4Error,
    CapacityError,
    ConfigError,
    Core,
    SegmentError,
    SegmentExistsError,
    SegmentLayoutError,
    SegmentNotFoundError,
    make_plugin_manager,
)
from bot4.shm import layout as L
from bot4.shm.segment import Segment


def shm_path(name: str) -> str:
    return f"/dev/shm/{name}"


def test_create_attach_share_state() -> None:
    with Core.create() as owner:
        other = Core.attach(owner.name)
        try:
            assert other.name == owner.name
            assert owner.is_owner and not other.is_owner
            assert other.slot != owner.slot
            owner.breaker("venue").force_open()
            assert other.breaker("venue").state.name == "FORCED_OPEN"
        finally:
            other.close()


def test_segment_mode_is_0600() -> None:
    with Core.create() as core:
        assert stat.S_IMODE(os.stat(shm_path(core.name)).st_mode) == 0o600


def test_context_manager_unlinks_for_owner_only() -> None:
    with Core.create() as core:
        name = core.name
        with Core.attach(name):
            pass
        assert os.path.exists(shm_path(name))  # an attached core's exit leaves it
    assert not os.path.exists(shm_path(name))


def test_named_segment_and_errors() -> None:
    name = f"bot4-test-{os.getpid()}"
    with Core.create(name) as core:
        assert core.name == name
        with pytest.raises(SegmentExistsError) as info:
            Core.create(name)
        assert info.value.name == name
    with pytest.raises(SegmentNotFoundError):
        Core.attach(name)


@pytest.mark.parametrize("bad", ["", "has/slash", "-leading-dash", "x" * 201, 42])
def test_bad_names(bad: object) -> None:
    with pytest.raises(ConfigError) as info:
        Core.create(bad)  # type: ignore[arg-type]
    assert info.value.field == "name"


@pytest.mark.parametrize(("field", "value"), [("max_workers", 0), ("max_breakers", -1), ("max_workers", 1.5)])
def test_bad_capacities(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        Core.create(**{field: value})  # type: ignore[arg-type]
    assert info.value.field == field


def test_layout_version_mismatch_refuses_to_attach() -> None:
    with Core.create() as core:
        core._segment.region.store(L.H_VERSION, L.LAYOUT_VERSION + 1)
        with pytest.raises(SegmentLayoutError, match="layout version"):
            Core.attach(core.name)
        core._segment.region.store(L.H_VERSION, L.LAYOUT_VERSION)
        core._segment.region.store(L.H_HASH, L.LAYOUT_HASH ^ 1)
        with pytest.raises(SegmentLayoutError, match="hash"):
            Core.attach(core.name)
        core._segment.region.store(L.H_HASH, L.LAYOUT_HASH)


def test_foreign_segment_is_refused() -> None:
    name = f"bot4-foreign-{os.getpid()}"
    with open(shm_path(name), "wb") as f:
        f.write(b"not a bot4 segment".ljust(8192, b"\0"))
    old = os.stat(shm_path(name)).st_mtime - 60
    os.utime(shm_path(name), (old, old))  # not a segment still being initialised
    try:
        with pytest.raises(SegmentLayoutError, match="not a bot4 segment"):
            Segment.attach(name)
        with pytest.raises(SegmentLayoutError, match="not a bot4 segment"):
            Core.create(name)  # never replaces what it cannot read
    finally:
        os.unlink(shm_path(name))


def test_worker_slots_capacity() -> None:
    with Core.create(max_workers=2) as core:
        second = Core.attach(core.name)
        with pytest.raises(CapacityError, match="worker slots"):
            Core.attach(core.name)
        second.close()
        third = Core.attach(core.name)  # the slot was given back
        assert third.slot == 1
        third.close()


def test_breaker_capacity() -> None:
    with Core.create(max_breakers=2) as core:
        core.breaker("a")
        core.breaker("b")
        with pytest.raises(CapacityError, match="breakers"):
            core.breaker("c")


@pytest.mark.parametrize("bad", ["", "x" * 65, "nul\0", 7])
def test_bad_breaker_names(core: Core, bad: object) -> None:
    with pytest.raises(ConfigError):
        core.breaker(bad)  # type: ignore[arg-type]


def test_closed_core_raises_bot4_error() -> None:
    core = Core.create()
    br = core.breaker("x")
    core.close()
    core.unlink()
    with pytest.raises(SegmentError, match="closed"):
        core.breaker("y")
    with pytest.raises(SegmentError, match="closed"):
        with br.call():
            pass
    core.close()  # idempotent
    assert isinstance(SegmentError("n", "m"), Bot4Error)


def test_a_closed_cores_risk_engine_raises_bot4_errors() -> None:
    from bot4 import Order

    core = Core.create()
    risk = core.risk
    core.close()
    core.unlink()
    order = Order(symbol="BTC/USDT", side="buy", quantity=1, type="limit", price=10)
    with pytest.raises(SegmentError, match="closed"):
        risk.check(order)
    with pytest.raises(SegmentError, match="closed"):
        risk.reserve(order)
    with pytest.raises(SegmentError):
        _ = core.risk


def _attach_and_exit(name: str) -> None:
    core = Core.attach(name)
    core.breaker("from-child").force_open()
    # exit without close: the resource tracker must not unlink, the slot must be reclaimable


def test_attached_process_exit_never_unlinks_and_its_slot_is_reclaimed() -> None:
    ctx = mp.get_context("spawn")
    with Core.create(max_workers=2) as core:
        p = ctx.Process(target=_attach_and_exit, args=(core.name,))
        p.start()
        p.join(60)
        assert p.exitcode == 0
        assert os.path.exists(shm_path(core.name))
        assert core.breaker("from-child").state.name == "FORCED_OPEN"
        late = Core.attach(core.name)  # the dead child's slot is reclaimed
        assert late.slot == 1
        late.close()


def test_stale_segment_of_dead_processes_is_replaced() -> None:
    name = f"bot4-stale-{os.getpid()}"
    code = (
        "import os, bot4\n"
        f"c = bot4.Core.create({name!r})\n"
        "c.breaker('x').force_open()\n"
        "os._exit(0)\n"  # dies without cleaning up
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert os.path.exists(shm_path(name))
    with Core.create(name) as core:
        assert core.breaker_names() == []


def test_numpy_views_see_the_same_words() -> None:
    with Core.create(plugins=make_plugin_manager(entry_points=False)) as core:
        seg = core._segment
        seg.region.store(L.H_FUSE_TRIPS, 12345)
        assert int(seg.words[L.H_FUSE_TRIPS]) == 12345
        assert seg.words.dtype == np.int64 and seg.words.size == seg.layout.words
