"""``bot4 clean``: removes segments whose processes are all dead, and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.cli.test_cli import run

# Creates a segment and dies without cleaning up: every process of it is dead.
ABANDON = "import os, sys, bot4\nbot4.Core.create(sys.argv[1])\nos._exit(0)\n"
# Holds a worker slot of an existing segment until stdin closes.
HOLD = "import sys, bot4\ncore = bot4.Core.attach(sys.argv[1])\nprint('holding', flush=True)\nsys.stdin.read()\n"


def shm_path(name: str) -> str:
    return f"/dev/shm/{name}"


def test_clean_removes_only_segments_whose_processes_are_all_dead() -> None:
    stale, held, garbage = (f"bot4-clean-{what}-{os.getpid()}" for what in ("stale", "held", "garbage"))
    for name in (stale, held):
        subprocess.run([sys.executable, "-c", ABANDON, name], check=True, timeout=60)
    with open(shm_path(garbage), "wb") as f:
        f.write(os.urandom(4096))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, held], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        listed = run("clean", "--dry-run", stale, held, garbage)
        assert listed.returncode == 0, listed.stderr
        assert f"would remove {stale}" in listed.stdout and held not in listed.stdout.replace(f"kept {held}", "")
        assert all(os.path.exists(shm_path(n)) for n in (stale, held, garbage))  # a dry run removes nothing

        cleaned = run("clean", stale, held, garbage)
        assert cleaned.returncode == 0, cleaned.stderr
        assert f"removed {stale}" in cleaned.stdout
        assert f"kept {held}" in cleaned.stdout and f"kept {garbage}" in cleaned.stdout
        assert not os.path.exists(shm_path(stale))
        assert os.path.exists(shm_path(held)) and os.path.exists(shm_path(garbage))
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
        for name in (stale, held, garbage):
            if os.path.exists(shm_path(name)):
                os.unlink(shm_path(name))


def test_clean_without_names_lists_stale_segments_on_the_host() -> None:
    name = f"bot4-clean-scan-{os.getpid()}"
    subprocess.run([sys.executable, "-c", ABANDON, name], check=True, timeout=60)
    try:
        listed = run("clean", "--dry-run")  # never without --dry-run here: the host may hold others' segments
        assert listed.returncode == 0, listed.stderr
        assert f"would remove {name}" in listed.stdout
        assert os.path.exists(shm_path(name))
    finally:
        os.unlink(shm_path(name))
