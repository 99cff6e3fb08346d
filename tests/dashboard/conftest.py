"""A desk (this process creates its segment) and ``bot4 serve`` on it, in a process of its own."""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot4 import Core, make_plugin_manager

_URL = re.compile(r"dashboard on (http://[^/\s]+/)")


@dataclass
class Served:
    """A running ``bot4 serve`` process."""

    proc: subprocess.Popen[str]
    url: str
    token: str | None
    output: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        return self.url.split("//", 1)[1].rstrip("/")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request; (status, headers, body)."""
        host, port = self.host.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def state(self) -> dict[str, Any]:
        status, _, body = self.request("GET", "/api/state")
        assert status == 200, body
        return json.loads(body)  # type: ignore[no-any-return]

    def control(self, action: str, body: dict[str, Any], token: str | None = "", **headers: str) -> tuple[int, Any]:
        """POST a control action with the server's token (``token=None``: none)."""
        token = self.token if token == "" else token
        h = {"Content-Type": "application/json", **headers}
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        status, _, raw = self.request("POST", f"/api/control/{action}", json.dumps(body).encode(), h)
        return status, json.loads(raw)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@pytest.fixture
def desk() -> Iterator[Core]:
    """A desk with equity and two priced symbols; this process is its creator."""
    with Core.create(plugins=make_plugin_manager(entry_points=False)) as core:
        core.risk.set_equity(100_000.0)
        core.risk.on_price("BTC/USDT", 50_000.0)
        core.risk.on_price("ETH/USDT", 3_000.0)
        yield core


def start_serve(name: str, *args: str, token: str | None = None) -> Served:
    """``python -m bot4 serve NAME --port 0 ARGS`` once it prints where it listens."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot4", "serve", name, "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    output: list[str] = []
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:  # keeps draining the output: a full pipe would stall the server
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            match = _URL.search(line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(60) or not found:
        proc.kill()
        proc.wait(5)
        raise AssertionError(f"bot4 serve did not start: {''.join(output)}")
    return Served(proc, found[0], token, output)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start ``bot4 serve`` on a segment (``control=True``: with a token file); stopped after the test."""
    started: list[Served] = []

    def make(name: str, *, control: bool = True, args: tuple[str, ...] = ()) -> Served:
        token = None
        extra = list(args)
        if control:
            token = secrets.token_urlsafe(24)
            path = tmp_path / f"token-{len(started)}"
            path.write_text(token + "\n")
            path.chmod(0o600)
            extra += ["--token-file", str(path)]
        served = start_serve(name, *extra, token=token)
        started.append(served)
        return served

    yield make
    for served in started:
        served.stop()
