"""The leak check removes only what the test run made: a live desk on the host survives it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from bot4 import Core
from tests.segment_watch import SegmentWatch, remove_leaked

# Double-forks so that the segment's creator is not a descendant of the test process,
# keeps its segment until its stdin closes, then removes it itself.
UNRELATED = """
import os, sys, bot4
if os.fork():
    os._exit(0)
os.setsid()
core = bot4.Core.create()
print(core.name, flush=True)
sys.stdin.read()
core.close()
core.unlink()
"""

KILLED_CHILD = """
import os, signal, bot4
core = bot4.Core.create()
print(core.name, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_an_unrelated_live_segment_survives_the_leak_check() -> None:
    watch = SegmentWatch()
    other = subprocess.Popen(
        [sys.executable, "-c", UNRELATED], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout is not None
        foreign = other.stdout.readline().strip()
        assert foreign and os.path.exists(f"/dev/shm/{foreign}")
        mine = Core.create()
        mine.close()  # left behind on purpose: no unlink
        assert watch.leaked() == [mine.name]
        assert remove_leaked(watch) == [mine.name]
        assert not os.path.exists(f"/dev/shm/{mine.name}")
        assert os.path.exists(f"/dev/shm/{foreign}")  # not ours: neither reported nor removed
        assert watch.leaked() == []
    finally:
        if other.stdin is not None:
            other.stdin.close()  # the unrelated process removes its own segment and exits
        if other.stdout is not None:
            other.stdout.read()  # end of file once it has gone
        other.wait(timeout=60)
    assert not os.path.exists(f"/dev/shm/{foreign}")


def test_a_segment_of_a_killed_child_counts_as_the_runs_own() -> None:
    watch = SegmentWatch()
    with watch.observing_children():
        child = subprocess.run([sys.executable, "-c", KILLED_CHILD], capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    name = child.stdout.strip()
    assert watch.leaked() == [name], (name, child.stderr, sorted(watch.identities))
    assert remove_leaked(watch) == [name]
    assert not os.path.exists(f"/dev/shm/{name}")
