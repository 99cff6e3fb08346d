"""Benchmark support: batches of calls, and a table of overheads and ratios per group.

Every benchmark times a batch of ``BATCH`` calls. The per-call overhead of a library is
its median batch time minus the median of the unguarded baseline (``plain``) of the
same group, measured in the same run, divided by ``BATCH``. Ratios compare overheads
measured in the same run, which holds on a noisy machine where absolute times do not.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

BATCH = 1000


def overheads(benchmarks: list[Any]) -> dict[str, dict[str, float]]:
    """``{group: {name: overhead ns per call}}`` from the session's benchmarks."""
    medians: dict[str, dict[str, float]] = defaultdict(dict)
    for bench in benchmarks:
        if bench.stats is None or not bench.group:
            continue
        params = bench.params or {}
        name = params.get("lib") or params.get("op") or bench.extra_info.get("lib") or bench.name
        medians[bench.group][name] = bench.stats.median / bench.extra_info.get("per_order_divisor", BATCH) * 1e9
    table: dict[str, dict[str, float]] = {}
    for group, by_name in medians.items():
        base = by_name.get("plain", 0.0)
        table[group] = {name: ns - base for name, ns in by_name.items() if name != "plain"}
    return table


def pytest_terminal_summary(terminalreporter: Any, config: Any) -> None:
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    for bench in session.benchmarks:
        percentiles = bench.extra_info.get("percentiles_ns")
        if percentiles:
            line = "  ".join(f"{k} {v:,} ns" for k, v in percentiles.items())
            terminalreporter.write_line(f"{bench.group}: {line}")
    table = overheads([b for b in session.benchmarks if "percentiles_ns" not in b.extra_info])
    if not table:
        return
    tr = terminalreporter
    tr.section("ns per call (median; minus the unguarded baseline where a group has one) and ratios")
    for group in sorted(table):
        row = table[group]
        tr.write_line(f"{group}:")
        for name, ns in sorted(row.items(), key=lambda kv: kv[1]):
            ratios = []
            for peer in ("circuitbreaker", "pybreaker", "purgatory", "nautilus", "ccxt.pro"):
                if peer in row and peer != name and row[peer] > 0:
                    ratios.append(f"{ns / row[peer]:.2f}x {peer}")
            tr.write_line(f"  {name:<34} {ns:>9.0f} ns   {'  '.join(ratios)}")


@pytest.fixture
def batch() -> int:
    return BATCH
