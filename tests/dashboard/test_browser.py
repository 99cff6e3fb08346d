"""The dashboard in a real browser: Debian's headless Chromium, driven through chromium-driver.

Screenshots go to ``artifacts/dashboard/`` (``BOT4_ARTIFACTS`` to move them).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot4 import Core, TradingState
from tests.dashboard.conftest import Served
from tests.helpers import require_binary

pytestmark = pytest.mark.processes
_ARTIFACTS = Path(os.environ.get("BOT4_ARTIFACTS", Path(__file__).parents[2] / "artifacts")) / "dashboard"


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium (the system's), its console log kept; quit after the test."""
    chromium = require_binary("chromium", "chromium")
    driver_path = require_binary("chromedriver", "chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver: Any, name: str) -> None:
    _ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(_ARTIFACTS / f"{name}.png"))


def _wait(driver: Any, predicate: Callable[[Any], Any], timeout: float, poll: float = 0.02) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=poll).until(predicate)


def _text(driver: Any, css: str) -> str:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return str(driver.find_element(By.CSS_SELECTOR, css).text)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def _problems(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]


def _open(driver: Any, served: Served) -> None:
    driver.get(served.url)
    _wait(driver, lambda d: _text(d, "#connection") == "live", 30)


def test_the_page_loads_with_no_console_error(desk: Core, serve: Callable[..., Served], browser: Any) -> None:
    desk.breaker("venue-a")
    desk.breaker("venue-b").force_open("maintenance")
    for i in range(20):
        desk.risk.on_price(f"SYM{i:02d}/USDT", 10.0 + i)
    served = serve(desk.name)
    _open(browser, served)
    _wait(browser, lambda d: _text(d, 'tr[data-breaker="venue-b"] .state') == "FORCED_OPEN", 10)
    assert _text(browser, 'tr[data-breaker="venue-a"] .state') == "CLOSED"
    assert _text(browser, "#trading-state") == "ACTIVE"
    requested = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).concat([location.href])"
    )
    assert all(url.startswith(served.url) or url.startswith("ws://") for url in requested), requested
    first = _text(browser, "#updated")  # a state pushed after the first one renders too (ms resolution)
    _wait(browser, lambda d: _text(d, "#updated") not in ("", first), 10)
    _shot(browser, "loaded")
    assert _problems(browser) == []


def test_a_breaker_tripped_by_a_worker_shows_open_within_a_second(
    desk: Core, serve: Callable[..., Served], browser: Any
) -> None:
    served = serve(desk.name, control=False)
    _open(browser, served)
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.dashboard.worker", desk.name, "venue-x"], stdout=subprocess.PIPE, text=True
    )
    try:
        _wait(browser, lambda d: _text(d, 'tr[data-breaker="venue-x"] .state') == "OPEN", 30)
        seen_ns = desk.clock.now_ns()  # the host's monotonic clock, as the worker's
        out, _ = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    opened_ns = int(out.split()[1])
    _shot(browser, "breaker-open")
    assert (seen_ns - opened_ns) / 1e9 < 1.0
    assert "venue-x" in _text(browser, "#timeline")
    assert _problems(browser) == []


def _press(browser: Any, token: str, button: str) -> None:
    from selenium.webdriver.common.by import By

    for field, value in (("#token", token), ("#operator", "carol"), ("#reason", "drill from the dashboard")):
        element = browser.find_element(By.CSS_SELECTOR, field)
        element.clear()
        element.send_keys(value)
    browser.find_element(By.CSS_SELECTOR, button).click()


def _workers(desk: Core, n: int) -> list[subprocess.Popen[str]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.dashboard.worker", "until-halted", desk.name],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "TRADING"
    return procs


def test_the_kill_switch_pressed_on_the_page_halts_every_worker(
    desk: Core, serve: Callable[..., Served], browser: Any
) -> None:
    served = serve(desk.name)
    workers = _workers(desk, 2)
    try:
        _open(browser, served)
        assert served.token is not None
        _press(browser, served.token, "#kill")
        _wait(browser, lambda d: _text(d, "#trading-state") == "HALTED", 10)
        for p in workers:
            out, _ = p.communicate(timeout=60)
            assert p.returncode == 0 and out.strip() == "HALTED"
    finally:
        for p in workers:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert desk.risk.trading_state is TradingState.HALTED
    assert "drill from the dashboard" in desk.risk.kill_switch.reason
    assert _text(browser, "#control-result").startswith("done")
    _shot(browser, "killed")
    assert _problems(browser) == []


def test_without_the_token_the_control_is_refused(desk: Core, serve: Callable[..., Served], browser: Any) -> None:
    served = serve(desk.name)
    workers = _workers(desk, 1)
    try:
        _open(browser, served)
        _press(browser, "not-the-token-at-all", "#kill")
        _wait(browser, lambda d: "refused (401)" in _text(d, "#control-result"), 10)
        _shot(browser, "refused")
        assert _text(browser, "#trading-state") == "ACTIVE"
        assert desk.risk.trading_state is TradingState.ACTIVE
        assert workers[0].poll() is None  # still trading
    finally:
        for p in workers:
            p.kill()
            p.wait()
    # the browser's own line for the 401 answer is the only one
    assert all("401" in e["message"] for e in _problems(browser)), _problems(browser)
