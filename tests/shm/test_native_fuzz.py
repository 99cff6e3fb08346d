"""Every native entry point against arbitrary integers: a clear error, never a crash.

A crash here (SIGSEGV) ends the test run, which fails it; the sanitizer build
(``make test-sanitize``) also reports any read or write outside the segment that did not crash.
"""

from __future__ import annotations

import ast
import mmap
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot4 import Bot4Error, Core, make_plugin_manager
from bot4.shm import _native

WORDS = 512
# Python integers of every size: small, word-sized, past 64 bits, negative.
ints = st.one_of(
    st.integers(-4, WORDS + 4),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-(2**400), 2**400),
)
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), ints)
# Argument errors of a private module may be builtin; a bot4 error says the shared state is wrong.
EXPECTED = (Bot4Error, ValueError, TypeError, OverflowError)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def region() -> _native.Region:
    return _native.Region(mmap.mmap(-1, WORDS * 8))


def _call(method: object, *args: object) -> None:
    try:
        method(*args)  # type: ignore[operator]
    except EXPECTED:
        pass


@SETTINGS
@given(st.sampled_from(["load", "loadf", "replay", "mutex_init", "mutex_unlock"]), ints)
def test_one_index(region: _native.Region, name: str, i: int) -> None:
    if name.startswith("mutex") and 0 <= i <= WORDS - _native.MUTEX_WORDS:
        return  # a valid place holds a mutex state, not an argument: not for this test
    _call(getattr(region, name), i)


@SETTINGS
@given(st.sampled_from(["store", "add", "load_range", "loadf_range", "storef"]), ints, ints)
def test_two_integers(region: _native.Region, name: str, i: int, v: int) -> None:
    _call(getattr(region, name), i, v)


@SETTINGS
@given(ints, ints, ints, ints)
def test_cas_tagged_sum_stage_publish(region: _native.Region, a: int, b: int, c: int, d: int) -> None:
    _call(region.cas, a, b, c)
    _call(region.tagged_sum, a, b, c, d)
    _call(region.stage, a, b, c, d)
    _call(region.stage, a, b, c, (d, c, b))
    _call(region.publish, a, b, c)


@SETTINGS
@given(ints, floats)
def test_mutex_lock_with_any_timeout(region: _native.Region, i: int, timeout: float) -> None:
    if 0 <= i <= WORDS - _native.MUTEX_WORDS:
        return  # garbage in a valid place is a mutex state, not an argument: not for this test
    _call(region.mutex_lock, i, timeout)


@SETTINGS
@given(st.lists(ints, min_size=9, max_size=9))
def test_gate_geometry(region: _native.Region, args: list[int]) -> None:
    record, cells, fuse, hw, slot, max_slots, buckets, _, _ = args
    _call(
        lambda: _native.Gate(
            region=region,
            record=record,
            cells=cells,
            fuse=fuse,
            high_water=hw,
            slot=slot,
            max_slots=max_slots,
            buckets=buckets,
            clock=None,
        )
    )


@pytest.fixture(scope="module")
def kernel() -> _native.LedgerKernel:
    core = Core.create(plugins=make_plugin_manager(entry_points=False))
    yield core.risk._kernel
    core.close()
    core.unlink()


@SETTINGS
@given(st.lists(ints, min_size=8, max_size=8), st.lists(floats, min_size=4, max_size=4))
def test_ledger_kernel_entry_points(kernel: _native.LedgerKernel, i: list[int], f: list[float]) -> None:
    _call(kernel.evaluate, i[0], i[1], i[2], f[0], f[1], f[2], i[3], i[4])
    _call(kernel.max_correlation, i[0], i[1])
    _call(kernel.reserve, i[0], i[1], i[2], f[0], f[1], i[3], i[4])
    _call(kernel.account, i[0], f[0], f[1], i[1], i[2])
    _call(kernel.fill, i[0], i[1], i[2], f[0], f[1], f[2], i[3], f[3])
    _call(kernel.symbol_update, i[0], i[1], i[2], f[0], f[1], f[2], f[3], f[0])


def test_the_stub_names_every_native_name() -> None:
    path = os.path.join(os.path.dirname(_native.__file__), "_native.pyi")
    tree = ast.parse(open(path).read())
    stubbed = {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    stubbed |= {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    public = {name for name in vars(_native) if not name.startswith("_")}
    assert stubbed == public
