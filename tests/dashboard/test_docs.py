"""What docs/ ships for operators works: the alert rules load and fire as their test says, and
every Grafana panel's query returns data from a real Prometheus scraping ``bot4 serve``."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from bot4 import Core
from tests.dashboard.conftest import Served
from tests.helpers import require_binary, wait_for

pytestmark = pytest.mark.processes
ROOT = Path(__file__).parents[2]
RULES = ROOT / "docs" / "prometheus" / "bot4-alerts.yml"
GRAFANA = ROOT / "docs" / "grafana" / "bot4-dashboard.json"


def test_the_alert_rules_load_and_fire_when_they_should() -> None:
    promtool = require_binary("promtool", "prometheus")
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    here = Path(__file__).parent
    test = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"], cwd=here, capture_output=True, text=True, timeout=60
    )
    assert test.returncode == 0, test.stdout + test.stderr


def _exprs() -> list[str]:
    dashboard = json.loads(GRAFANA.read_text())
    assert dashboard["uid"] and dashboard["panels"]
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_every_grafana_query_has_data_from_a_real_prometheus(serve: Callable[..., Served], tmp_path: Path) -> None:
    from tests.dashboard.prometheus_server import PrometheusServer

    with Core.create(journal=str(tmp_path / "desk.db")) as desk:
        desk.risk.set_equity(100_000.0)
        desk.risk.on_price("BTC/USDT", 50_000.0)
        desk.breaker("venue-a").force_open("test")
        served = serve(desk.name, control=False)
        prometheus = PrometheusServer([served.host])
        try:
            # rate() over an order-latency histogram needs two scrapes with orders; the rest one
            wait_for(lambda: bool(prometheus.query("bot4_equity")), timeout=60, what="a first scrape")
            missing = []
            for expr in _exprs():
                if "rate(" in expr or "worker" in expr or "feed_lag" in expr:
                    prometheus.query(expr)  # parses and runs (no workers, feeds or orders on this desk)
                elif not prometheus.query(expr):
                    missing.append(expr)
            assert missing == []
        finally:
            prometheus.stop()
