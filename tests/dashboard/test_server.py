"""``bot4 serve`` over HTTP: the JSON API, the WebSocket push, control and its guards."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from bot4 import BreakerState, Core, TradingState
from bot4.journal.query import events
from bot4.journal.store import JournalStore
from tests.dashboard.conftest import Served
from tests.helpers import wait_for

pytestmark = pytest.mark.processes


def _trip_in_worker(segment: str, breaker: str) -> int:
    """A worker process fails calls until ``breaker`` opens; the monotonic ns it saw OPEN."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.dashboard.worker", segment, breaker],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return int(done.stdout.split()[1])


def test_the_state_is_the_desks(desk: Core, serve: Callable[..., Served]) -> None:
    from bot4.streams.events import Quote

    desk.breaker("venue-a")
    desk.breaker("venue-b").force_open("maintenance")
    desk.quotes.publish("venue-a", Quote("BTC/USDT", 49_999.0, 1.0, 50_001.0, 2.0, 7), desk.clock.now_ns())
    served = serve(desk.name, control=False)
    state = served.state()
    (feed,) = state["feeds"]
    assert (feed["venue"], feed["symbol"], feed["bid"], feed["ask"]) == ("venue-a", "BTC/USDT", 49_999.0, 50_001.0)
    assert 0 <= feed["lag_seconds"] < 60
    assert [w["pid"] for w in state["workers"]] == [os.getpid()]  # the desk's own process; not the server's
    assert state["workers"][0]["alive"] and state["workers"][0]["heartbeat_age"] >= 0
    assert state["segment"] == desk.name
    assert state["trading"]["state"] == "ACTIVE"
    assert {b["name"]: b["state"] for b in state["breakers"]} == {"venue-a": "CLOSED", "venue-b": "FORCED_OPEN"}
    assert state["account"]["equity"] == pytest.approx(100_000.0)
    assert [p["symbol"] for p in state["positions"]] == ["BTC/USDT", "ETH/USDT"]
    assert state["correlation"]["symbols"] == ["BTC/USDT", "ETH/USDT"]
    assert state["correlation"]["matrix"] == [[1.0, None], [None, 1.0]]  # too few samples: not counted
    assert state["limits"]["max_drawdown"] == pytest.approx(0.15)
    status, headers, body = served.request("GET", "/")
    assert status == 200 and b"/static/dashboard.js" in body
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    for name in ("dashboard.js", "dashboard.css"):
        assert served.request("GET", f"/static/{name}")[0] == 200
    for path in ("/static/../server.py", "/static/server.py", "/static/%2e%2e%2fview.py", "/nothing"):
        assert served.request("GET", path)[0] == 404, path


def test_a_breaker_tripped_by_a_worker_is_pushed_at_once(desk: Core, serve: Callable[..., Served]) -> None:
    served = serve(desk.name, control=False)

    async def watch() -> tuple[dict[str, Any], float]:
        async with aiohttp.ClientSession() as session, session.ws_connect(served.url + "ws") as ws:
            first = json.loads((await ws.receive(timeout=10)).data)
            assert all(b["name"] != "venue-x" or b["state"] == "CLOSED" for b in first["breakers"])
            loop = asyncio.get_running_loop()
            opened_ns = await loop.run_in_executor(None, _trip_in_worker, desk.name, "venue-x")
            deadline = loop.time() + 1.0  # the bound for the browser; the push itself is ms
            while True:
                msg = await ws.receive(timeout=max(0.01, deadline - loop.time()))
                state = json.loads(msg.data)
                got_ns = desk.clock.now_ns()
                if any(b["name"] == "venue-x" and b["state"] == "OPEN" for b in state["breakers"]):
                    return state, (got_ns - opened_ns) / 1e6

    state, elapsed_ms = asyncio.run(watch())
    assert elapsed_ms < 1000
    opened = [t for t in state["timeline"] if t["breaker"] == "venue-x"]
    assert opened and opened[-1]["to"] == "OPEN" and opened[-1]["from"] == "CLOSED"
    assert "venue down" in (opened[-1]["reason"] or "")  # what opened it, as the worker saw it
    assert state["push_latency_ms"] is not None and 0 <= state["push_latency_ms"] < 1000


def test_a_slow_client_does_not_hold_up_the_others(desk: Core, serve: Callable[..., Served]) -> None:
    served = serve(desk.name)

    async def run() -> str:
        async with aiohttp.ClientSession() as session:
            stalled = [await session.ws_connect(served.url + "ws") for _ in range(5)]  # never read
            async with session.ws_connect(served.url + "ws") as ws:
                await ws.receive(timeout=10)
                for i in range(20):
                    desk.breaker(f"b{i}").force_open("load")
                    desk.breaker(f"b{i}").reset("load")
                deadline = asyncio.get_running_loop().time() + 5
                while True:
                    state = json.loads((await ws.receive(timeout=5)).data)
                    if len(state["breakers"]) == 20 and all(b["state"] == "CLOSED" for b in state["breakers"]):
                        break
                    assert asyncio.get_running_loop().time() < deadline
            for s in stalled:
                await s.close()
            return "ok"

    assert asyncio.run(run()) == "ok"


def test_control_actions_change_the_desk_and_are_journaled(serve: Callable[..., Served], tmp_path: Any) -> None:
    with Core.create(journal=str(tmp_path / "desk.db")) as desk:
        desk.risk.set_equity(100_000.0)
        desk.breaker("venue-a")
        served = serve(desk.name)
        who = {"operator": "alice", "reason": "venue maintenance"}
        assert served.control("force-open", {**who, "breaker": "venue-a"})[0] == 200
        assert desk.breaker("venue-a").state is BreakerState.FORCED_OPEN
        assert served.control("reset", {**who, "breaker": "venue-a"})[0] == 200
        assert desk.breaker("venue-a").state is BreakerState.CLOSED
        status, answer = served.control("limits", {**who, "limits": {"max_drawdown": 0.1, "max_open_orders": 7}})
        assert status == 200, answer
        assert desk.risk.limits.max_drawdown == pytest.approx(0.1) and desk.risk.limits.max_open_orders == 7
        status, answer = served.control("kill", {"operator": "bob", "reason": "runaway strategy"})
        assert status == 200, answer
        assert desk.risk.trading_state is TradingState.HALTED
        assert "runaway strategy" in desk.risk.kill_switch.reason
        assert served.state()["trading"]["state"] == "HALTED"
        assert served.control("resume", {"operator": "bob", "reason": "fixed"})[0] == 200
        assert desk.risk.trading_state is TradingState.ACTIVE
        assert desk.journal is not None and desk.journal.wait_durable(10)
        store = JournalStore(str(tmp_path / "desk.db"), read_only=True)
        try:
            texts = [e["text"] for e in events(store, kinds=("OPERATOR",))]
        finally:
            store.close()
        assert len(texts) == 5, texts
        assert any("alice" in t and "venue-a forced open (venue maintenance)" in t for t in texts)
        assert any("bob" in t and "kill switch tripped (runaway strategy)" in t for t in texts)
        assert all("via bot4 serve from 127.0.0.1" in t for t in texts)


def _unchanged(desk: Core) -> tuple[Any, ...]:
    b = desk.breaker("venue-a")
    return desk.risk.trading_state, desk.risk.limits, b.state, b.snapshot().transitions


_WHO = {"operator": "mallory", "reason": "because"}


@pytest.mark.parametrize(
    ("what", "status"),
    [
        ("no token", 401),
        ("wrong token", 401),
        ("token of another scheme", 401),
        ("cross-origin", 403),
        ("cross-site fetch", 403),
        ("form body", 415),
        ("oversized", 413),
        ("oversized, no length", 413),
        ("not JSON", 400),
        ("JSON not an object", 400),
        ("no reason", 422),
        ("no operator", 422),
        ("unknown field", 422),
        ("limit out of range", 422),
        ("limit of the wrong type", 422),
        ("unknown limit", 422),
        ("infinite limit", 422),
        ("unknown breaker", 404),
        ("unknown action", 404),
        ("wrong host", 421),
    ],
)
def test_a_refused_control_request_changes_nothing(
    desk: Core, serve: Callable[..., Served], what: str, status: int
) -> None:
    desk.breaker("venue-a")
    served = serve(desk.name)
    before = _unchanged(desk)
    json_h = {"Content-Type": "application/json", "Authorization": f"Bearer {served.token}"}
    kill = json.dumps(_WHO).encode()
    if what == "no token":
        got = served.control("kill", _WHO, token=None)[0]
    elif what == "wrong token":
        got = served.control("kill", _WHO, token=(served.token or "") + "x")[0]
    elif what == "token of another scheme":
        got = served.request("POST", "/api/control/kill", kill, {**json_h, "Authorization": f"Basic {served.token}"})[0]
    elif what == "cross-origin":
        got = served.control("kill", _WHO, Origin="http://evil.example")[0]
    elif what == "cross-site fetch":
        got = served.control("kill", _WHO, **{"Sec-Fetch-Site": "cross-site"})[0]
    elif what == "form body":
        h = {**json_h, "Content-Type": "application/x-www-form-urlencoded"}
        got = served.request("POST", "/api/control/kill", b"operator=a&reason=b", h)[0]
    elif what == "oversized":
        got = served.request("POST", "/api/control/kill", b"{" + b" " * (64 * 1024) + b"}", json_h)[0]
    elif what == "oversized, no length":
        got = _chunked(served, "/api/control/kill", b" " * (64 * 1024), json_h)
    elif what == "not JSON":
        got = served.request("POST", "/api/control/kill", b"{operator: mallory", json_h)[0]
    elif what == "JSON not an object":
        got = served.request("POST", "/api/control/kill", b'["kill"]', json_h)[0]
    elif what == "no reason":
        got = served.control("kill", {"operator": "mallory", "reason": "  "})[0]
    elif what == "no operator":
        got = served.control("kill", {"reason": "because"})[0]
    elif what == "unknown field":
        got = served.control("kill", {**_WHO, "flatten": True, "also": 1})[0]
    elif what == "limit out of range":
        got = served.control("limits", {**_WHO, "limits": {"max_drawdown": -0.5}})[0]
    elif what == "limit of the wrong type":
        got = served.control("limits", {**_WHO, "limits": {"max_drawdown": "lots"}})[0]
    elif what == "unknown limit":
        got = served.control("limits", {**_WHO, "limits": {"max_drawdown": 0.1, "max_fun": 1}})[0]
    elif what == "infinite limit":
        raw = b'{"operator": "m", "reason": "r", "limits": {"max_drawdown": Infinity}}'
        got = served.request("POST", "/api/control/limits", raw, json_h)[0]
    elif what == "unknown breaker":
        got = served.control("force-open", {**_WHO, "breaker": "venue-zz"})[0]
    elif what == "unknown action":
        got = served.control("explode", _WHO)[0]
    else:
        got = served.request(
            "POST", "/api/control/kill", kill, {**json_h, "Host": f"evil.example:{served.host.split(':')[1]}"}
        )[0]
    assert got == status
    assert _unchanged(desk) == before
    assert served.proc.poll() is None  # still serving


def _chunked(served: Served, path: str, body: bytes, headers: dict[str, str]) -> int:
    import http.client

    host, port = served.host.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("POST", path, body=iter([b"{", body, b"}"]), headers=headers, encode_chunked=True)
        return conn.getresponse().status
    finally:
        conn.close()


def test_without_a_token_the_server_is_read_only(desk: Core, serve: Callable[..., Served]) -> None:
    served = serve(desk.name, control=False)
    status, answer = served.control("kill", _WHO, token="anything-at-all-long-enough")
    assert status == 403 and "read-only" in answer["error"]
    assert desk.risk.trading_state is TradingState.ACTIVE
    assert served.request("GET", "/api/health")[2] == json.dumps({"segment": desk.name, "read_only": True}).encode()


def test_it_binds_loopback_and_refuses_foreign_origins_on_the_websocket(
    desk: Core, serve: Callable[..., Served]
) -> None:
    served = serve(desk.name)
    assert served.url.startswith("http://127.0.0.1:")
    port = int(served.host.split(":")[1])
    listening = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True)
    if listening.returncode == 0 and listening.stdout.strip():
        assert all(line.split()[3].startswith("127.0.0.1:") for line in listening.stdout.strip().splitlines())

    async def connect(origin: str) -> int:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(served.url + "ws", headers={"Origin": origin}):
                    return 101
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status

    assert asyncio.run(connect("http://evil.example")) == 403
    assert asyncio.run(connect(served.url.rstrip("/"))) == 101


def test_the_server_ends_when_its_segment_is_removed(serve: Callable[..., Served]) -> None:
    core = Core.create()
    try:
        served = serve(core.name, control=False)
    finally:
        core.close()
        core.unlink()
    wait_for(lambda: served.proc.poll() is not None, timeout=30, what="bot4 serve to end")
    assert served.proc.returncode == 0
    assert "was removed" in "".join(served.output)


def test_garbage_on_the_websocket_closes_only_that_client(desk: Core, serve: Callable[..., Served]) -> None:
    served = serve(desk.name)

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(served.url + "ws") as bad:
                await bad.receive(timeout=10)
                await bad.send_bytes(b"\xff" * 10_000)  # larger than any message the server takes
                while not bad.closed:
                    msg = await bad.receive(timeout=10)
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                        break
            async with session.ws_connect(served.url + "ws") as good:
                assert json.loads((await good.receive(timeout=10)).data)["segment"] == desk.name

    asyncio.run(run())
    assert served.proc.poll() is None


def _serve_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``bot4 serve ARGS --port 0`` run to its end (a refusal ends it at once)."""
    return subprocess.run(
        [sys.executable, "-m", "bot4", "serve", *args, "--port", "0"], capture_output=True, text=True, timeout=60
    )


def test_cli_refuses_a_token_file_others_can_read(desk: Core, tmp_path: Any) -> None:
    path = tmp_path / "token"
    path.write_text("x" * 32)
    path.chmod(0o644)
    done = _serve_cli(desk.name, "--token-file", str(path))
    assert done.returncode == 2 and "chmod 600" in done.stderr
    path.chmod(0o600)
    path.write_text("short")
    done = _serve_cli(desk.name, "--token-file", str(path))
    assert done.returncode == 2 and "at least 16 characters" in done.stderr
    done = _serve_cli(desk.name, "--token-file", str(tmp_path))  # a directory
    assert done.returncode == 2 and "not a regular file" in done.stderr
    done = _serve_cli("no-such-segment-here")
    assert done.returncode == 2 and "no-such-segment-here" in done.stderr


def test_demo_serve_shows_the_running_demo() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot4", "demo", "--workers", "1", "--duration", "4", "--serve", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            if "dashboard on" in line:
                url = line.split("dashboard on ")[1].split("#")[0]
                assert "#token=" in line  # control on, with a token of its own
                break
        assert url is not None
        import urllib.request

        with urllib.request.urlopen(url + "api/state", timeout=10) as answer:
            state = json.load(answer)
        assert {b["name"] for b in state["breakers"]} == {"venue-a", "venue-b"}
        assert state["account"]["equity"] is not None
        rest, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_change_not_pushed_yet_is_reported_again(desk: Core) -> None:
    """A look that finds a change the server does not push at once (coalescing) must report it
    at the next look too: else a ledger change waits for the next second's sample."""
    from bot4._cli.dashboard.view import DeskView

    view = DeskView(desk)
    view._last_sample = time.time() + 3600  # no history sample in this test's looks
    assert view.poll() == (False, False)
    desk.risk.set_equity(123_456.0)
    assert view.poll() == (False, True)
    view.keep(False)  # not pushed: within the coalescing gap
    assert view.poll() == (False, True)
    assert view.poll() == (False, False)
    desk.breaker("venue-a").force_open("test")
    assert view.poll()[0] is True
    view.keep(True)
    assert view.poll() == (True, True)
    assert view.poll() == (False, False)


def test_a_state_never_shows_a_breaker_state_without_its_transition(desk: Core) -> None:
    """A breaker made and opened after the last look (a busy host delays the looks) is shown
    OPEN only with its transition in the timeline."""
    from bot4._cli.dashboard.view import DeskView

    view = DeskView(desk)  # it has looked once
    desk.breaker("venue-x").force_open("made and opened between two looks")
    state = view.state()  # no look in between
    (shown,) = state["breakers"]
    assert shown["state"] == "FORCED_OPEN"
    (entry,) = state["timeline"]
    assert (entry["breaker"], entry["from"], entry["to"]) == ("venue-x", "CLOSED", "FORCED_OPEN")
    assert view.poll()[0] is True and view.state()["timeline"] == [entry]  # seen once, recorded once
