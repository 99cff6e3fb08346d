"""Cost of the cross-process primitives a shared breaker could be built on (same run).

bot4 uses the native compare-and-swap for every racing write; the alternatives are
here to show what the choice is worth. Each benchmark times ``BATCH`` operations.
"""

from __future__ import annotations

import fcntl
import mmap
import multiprocessing as mp
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from bot4.shm import _native


@pytest.fixture(scope="module")
def buf() -> Iterator[mmap.mmap]:
    mm = mmap.mmap(-1, 4096)
    yield mm


def ops_plain(n: int) -> None:
    for _ in range(n):
        pass


@pytest.mark.parametrize(
    "op",
    [
        "plain",
        "native cas",
        "native add",
        "numpy +=",
        "robust mutex",
        "journal stage + publish (5 words)",
        "mp.Lock",
        "fcntl.lockf",
    ],
)
def test_primitive(benchmark: Any, buf: mmap.mmap, op: str, batch: int) -> None:
    benchmark.group = "primitives"
    region = _native.Region(buf)
    if op == "plain":
        benchmark(ops_plain, batch)
    elif op == "native cas":
        cas, load = region.cas, region.load

        def run(n: int) -> None:
            for _ in range(n):
                v = load(0)
                cas(0, v, v + 1)

        benchmark(run, batch)
    elif op == "native add":
        add = region.add

        def run(n: int) -> None:
            for _ in range(n):
                add(0, 1)

        benchmark(run, batch)
    elif op == "numpy +=":
        arr = np.frombuffer(buf, dtype=np.int64)

        def run(n: int) -> None:
            for _ in range(n):
                arr[1] += 1  # not atomic across processes: loses updates

        benchmark(run, batch)
        del arr
    elif op == "robust mutex":
        region.mutex_init(8)
        lock, unlock = region.mutex_lock, region.mutex_unlock

        def run(n: int) -> None:
            for _ in range(n):
                lock(8, 5.0)
                unlock(8)

        benchmark(run, batch)
    elif op == "journal stage + publish (5 words)":
        region.store(65, 64)  # journal at word 64, capacity 64
        stage, publish = region.stage, region.publish
        values = (5, 0.5, 7, 1.5, 2)

        def run(n: int) -> None:
            for _ in range(n):
                publish(64, stage(64, 0, 1, values), -1)

        benchmark(run, batch)
    elif op == "mp.Lock":
        lock = mp.get_context("spawn").Lock()

        def run(n: int) -> None:
            for _ in range(n):
                with lock:
                    pass

        benchmark(run, batch)
    else:
        fd, path = tempfile.mkstemp()

        def run(n: int) -> None:
            for _ in range(n):
                fcntl.lockf(fd, fcntl.LOCK_EX)
                fcntl.lockf(fd, fcntl.LOCK_UN)

        benchmark(run, batch)
        os.close(fd)
        os.unlink(path)
    region.release()
