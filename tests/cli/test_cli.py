"""The bot4 command, through real subprocesses."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from tests.helpers import wait_for


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot4", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_demo_report_holds_its_invariants() -> None:
    import json

    result = run("demo", "--workers", "2", "--duration", "6", "--json", timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["exit_code"] == 0
    assert all(report["invariants"].values()), report["invariants"]
    assert report["breakers"]["venue-b"]["trips"] >= 1  # the faulty venue's breaker opened
    assert report["fills_by_venue"].get("venue-a", 0) > 0  # and routing moved to the healthy one
    statuses = set(report["orders_by_status"])
    assert statuses and statuses <= {s.name for s in __import__("bot4").OrderStatus}
    assert report["submit_latency_us"]["99"] > 0


def test_the_demo_on_streams_trades_on_quotes_fed_over_websocket() -> None:
    """Paper venues publish over WebSocket on loopback, supervised feeds write the quote table
    and the ledger's marks, routing reads the quotes, workers follow their order updates."""
    import json

    result = run("demo", "--streams", "--workers", "2", "--duration", "4", "--json", timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["exit_code"] == 0 and all(report["invariants"].values()), report["invariants"]
    symbols = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT")
    assert set(report["quotes"]) == {f"{v} {s}" for v in ("venue-a", "venue-b") for s in symbols}
    assert all(q["update_id"] > 1 for q in report["quotes"].values())  # followed round after round
    assert {"feed:venue-a", "feed:venue-b"} <= set(report["breakers"])
    assert report["fills_told_by_streams"] == sum(report["fills_by_venue"].values())  # every fill, once each
    assert report["order_updates_received"] > report["fills_told_by_streams"]  # and the orders' news
    assert report["orders_by_status"].get("FILLED", 0) > 0


def test_the_same_seed_gives_the_same_report() -> None:
    import json

    def report(seed: str, workers: str = "3") -> dict[str, object]:
        result = run("demo", "--workers", workers, "--duration", "2", "--seed", seed, "--json", timeout=180)
        assert result.returncode == 0, result.stderr[-3000:]
        out = json.loads(result.stdout)
        for timing in ("submit_latency_us", "check_latency_us"):  # measured, not simulated
            assert out.pop(timing)
        return out  # type: ignore[no-any-return]

    first = report("11")
    assert first == report("11")
    other = report("12")
    assert other["orders_by_status"] != first["orders_by_status"] or other["positions"] != first["positions"]


def test_bad_arguments_exit_non_zero_with_one_line() -> None:
    result = run("demo", "--workers", "0")
    assert result.returncode == 2
    assert "must be at least 1" in result.stderr
    assert "Traceback" not in result.stderr
    empty = run("status", "")  # not "every segment"
    assert empty.returncode == 2 and "empty" in empty.stderr and "Traceback" not in empty.stderr


def test_version() -> None:
    from bot4 import __version__

    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"bot4 {__version__}"


def test_status_kill_and_resume_a_live_segment() -> None:
    import json
    import os

    from bot4 import Core

    name = f"bot4-cli-{os.getpid()}"
    with Core.create(name) as core:
        core.breaker("binance").force_open()
        core.risk.set_equity(1000.0)
        text = run("status", name)
        assert text.returncode == 0, text.stderr
        assert "binance" in text.stdout and "FORCED_OPEN" in text.stdout and "ACTIVE" in text.stdout
        killed = run("kill", name, "--reason", "exchange incident")
        assert killed.returncode == 0 and "HALTED" in killed.stdout
        assert core.risk.kill_switch.active and core.risk.kill_switch.reason == "exchange incident"
        data = json.loads(run("status", name, "--json").stdout)
        assert data["kill_switch"]["active"] is True
        assert data["breakers"][0]["state"] == "FORCED_OPEN"
        assert data["risk"]["equity"] == 1000.0
        assert run("resume", name, "--reason", "all clear").returncode == 0
        assert not core.risk.kill_switch.active
        everything = run("status")
        assert name in everything.stdout


def test_cli_errors_are_one_line() -> None:
    import os

    from bot4 import Core
    from bot4.shm import layout as L

    missing = run("status", "no-such-segment")
    assert missing.returncode == 2 and missing.stderr.strip() == "bot4: error: no segment named 'no-such-segment'"
    assert run("kill", "no-such-segment", "--reason", "x").returncode == 2
    assert run("kill", "x").returncode == 2  # --reason is required
    name = f"bot4-old-{os.getpid()}"
    with Core.create(name) as core:
        core._segment.region.store(L.H_VERSION, L.LAYOUT_VERSION + 1)  # made by another bot4
        other = run("status", name)
        assert other.returncode == 2 and "layout version" in other.stderr
        assert "Traceback" not in other.stderr and len(other.stderr.strip().splitlines()) == 1
        core._segment.region.store(L.H_VERSION, L.LAYOUT_VERSION)


def test_the_command_is_for_operators_only_benchmarks_are_make_bench() -> None:
    result = run("bench")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def _worker_children(pid: int) -> list[int]:
    """The demo's worker processes: its children that are not multiprocessing's resource tracker."""
    workers = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"resource_tracker" not in cmdline:
                workers.append(int(child))
    return workers


def test_a_worker_killed_mid_run_keeps_its_fills_in_the_report(tmp_path: Path) -> None:
    import json
    import os
    import signal
    import time

    started = time.time()
    demo = subprocess.Popen(
        [sys.executable, "-m", "bot4", "demo", "--workers", "2", "--duration", "8", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def fills_written() -> bool:
            return any(
                p.stat().st_mtime >= started and p.stat().st_size > 0
                for p in Path(tempfile.gettempdir()).glob("bot4-demo-*/fills-*.jsonl")
            )

        wait_for(fills_written, 60, "the demo's first fills")
        workers = _worker_children(demo.pid)
        assert workers, "no worker process found"
        os.kill(workers[0], signal.SIGKILL)  # a worker of ours, killed with fills already made
        out, err = demo.communicate(timeout=180)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
    assert demo.returncode == 0, err[-3000:]
    report = json.loads(out)
    assert report["restarts"] >= 1
    assert all(report["invariants"].values()), report["invariants"]


def test_status_of_a_segment_on_simulated_time_is_read_at_that_time() -> None:
    from bot4 import BreakerConfig, Core, ManualClock, make_plugin_manager
    from bot4._cli.status import render, status_of

    clock = ManualClock(5_000.0)  # far from the host's monotonic time
    with Core.create(clock=clock, plugins=make_plugin_manager(entry_points=False)) as core:
        venue = core.breaker("venue", BreakerConfig(consecutive_failures=None, minimum_calls=100))(lambda: 1)
        for _ in range(3):
            venue()
        clock.advance(2.0)
        core.heartbeat()
        status = status_of(core.name)
    assert status["clock"] == "simulated, at 5002.000s"
    assert [b["calls"] for b in status["breakers"]] == [3]  # the window read at the simulated time
    (me,) = status["workers"]
    assert me["heartbeat_age"] == 0.0  # not the host's time minus the simulated one
    assert "clock: simulated" in render(status)


def test_ctrl_c_during_the_demo_says_so_and_exits_130() -> None:
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-m", "bot4", "demo", "--workers", "2", "--duration", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    while not (line := proc.stdout.readline()).startswith("["):  # the live view: the workers run
        assert line, "the demo ended before its live view"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted (SIGINT)" in err and "Traceback" not in err
    assert "FAILED" not in out  # the safety invariants held; the scenario's are not judged when cut short
