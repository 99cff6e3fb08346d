"""Every example runs, offline, as a user would run it (``examples/README.md``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.redis_server import RedisServer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, check=False, env=env, cwd=EXAMPLES
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


@pytest.mark.parametrize(("script", "args", "shows"), [
    ("guarded_exchange.py", (), "rejected: binance is FORCED_OPEN (maintenance window)"),
    ("bracket.py", (), "stop FILLED | take-profit CANCELED"),
    ("supervised_workers.py", ("2",), "audit []"),
    ("live_streams.py", (), "order FILLED at 100.0, position 1.0"),
])  # fmt: skip
def test_an_example_runs(script: str, args: tuple[str, ...], shows: str) -> None:
    assert shows in run(script, *args).stdout


def test_the_two_host_fleet_example_against_a_real_redis() -> None:
    server = RedisServer()
    server.start()
    try:
        out = run("two_host_fleet.py", server.url).stdout
    finally:
        server.close()
    assert "host b sees binance FORCED_OPEN" in out
    assert "host b reserves 6,000: ('FLEET_EXPOSURE',)" in out
    assert "host b: HALTED - operator on host a" in out


def test_the_rule_package_is_loaded_by_its_entry_point(tmp_path: Path) -> None:
    """What ``pip install ./examples/desk_rules`` puts on the path: the package and its
    distribution metadata with the ``bot4`` entry point (written here, offline)."""
    info = tmp_path / "desk_rules-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: desk-rules\nVersion: 1.0.0\n")
    entry = (EXAMPLES / "desk_rules" / "pyproject.toml").read_text().split("[project.entry-points.bot4]")[1]
    (info / "entry_points.txt").write_text("[bot4]\n" + entry.strip().replace('"', "") + "\n")
    path = os.pathsep.join([str(tmp_path), str(EXAMPLES / "desk_rules" / "src"), os.environ.get("PYTHONPATH", "")])
    out = run("desk_rules/check.py", env={**os.environ, "PYTHONPATH": path}).stdout
    assert "SYMBOL_BANNED" in out
