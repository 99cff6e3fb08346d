"""Run inside a PID namespace of its own: take the ledger mutex as process A or B (see test_mutex)."""

from __future__ import annotations

import os
import sys
import time

import bot4


def _wait_for(path: str) -> None:
    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} never appeared")
        time.sleep(0.005)


def main(name: str, role: str, folder: str) -> None:
    core = bot4.Core.attach(name, allow_foreign=True)
    mutex = core.risk._mutex
    if role == "A":
        with mutex:
            open(os.path.join(folder, "a-holds"), "w").close()
            _wait_for(os.path.join(folder, "b-trying"))
            time.sleep(0.3)  # B is trying to enter meanwhile
            left = time.monotonic()
        with open(os.path.join(folder, "a-left"), "w") as f:
            f.write(repr(left))
    else:
        _wait_for(os.path.join(folder, "a-holds"))
        open(os.path.join(folder, "b-trying"), "w").close()
        with mutex:
            entered = time.monotonic()
        with open(os.path.join(folder, "b-entered"), "w") as f:
            f.write(repr(entered))
    core.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
