"""A real Prometheus (Debian's package) scraping given targets: loopback, a temporary store,
stopped by its own PID."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from typing import Any

from tests.helpers import free_port, require_binary

__all__ = ["PrometheusServer"]


class PrometheusServer:
    """``prometheus`` on 127.0.0.1 scraping ``targets`` (host:port) every second."""

    def __init__(self, targets: list[str]) -> None:
        self._binary = require_binary("prometheus", "prometheus")
        self.port = free_port()
        self._dir = tempfile.mkdtemp(prefix="bot4-prometheus-")
        config = os.path.join(self._dir, "prometheus.yml")
        with open(config, "w") as f:
            f.write(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                "scrape_configs:\n  - job_name: bot4\n    static_configs:\n"
                f"      - targets: {json.dumps(targets)}\n"
            )
        args = [
            self._binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={os.path.join(self._dir, 'data')}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        self._log = open(os.path.join(self._dir, "log"), "wb")
        self._proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"prometheus did not start: {self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        with open(os.path.join(self._dir, "log"), encoding="utf-8", errors="replace") as f:
            return f.read()[-4000:]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The result vector of an instant query over the HTTP API."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as r:
            answer = json.load(r)
        assert answer["status"] == "success", answer
        return answer["data"]["result"]  # type: ignore[no-any-return]

    def targets(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/targets", timeout=5) as r:
            return json.load(r)["data"]["activeTargets"]  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._log.close()
        shutil.rmtree(self._dir, ignore_errors=True)
