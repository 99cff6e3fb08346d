"""A real redis-server for the fleet tests and benchmarks: loopback only, persistence off,
stopped by its own PID."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from tests.helpers import free_port, require_binary

__all__ = ["RedisSentinelSet", "RedisServer", "redis_binary"]


def redis_binary() -> str:
    """The redis-server to start (skipped when missing, but in CI)."""
    return require_binary("redis-server", "redis-server")


class RedisServer:
    """``redis-server`` on 127.0.0.1 at a free port; :meth:`stop` and :meth:`start` again keep the port."""

    def __init__(self) -> None:
        self._binary = redis_binary()
        self.port = free_port()
        self._dir = tempfile.mkdtemp(prefix="bot4-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self._binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        args += ["--dir", self._dir, "--daemonize", "no", "--loglevel", "warning"]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        """Stop the server by its PID (SIGKILL: nothing is saved, as with a crash)."""
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGKILL)
            os.kill(self._proc.pid, signal.SIGCONT)  # (a stalled one included)
            self._proc.wait(timeout=10)
        self._proc = None

    def pause(self) -> None:
        """Stall the server (SIGSTOP): connections stay open, nothing is answered."""
        assert self._proc is not None and self._proc.poll() is None
        os.kill(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Let a stalled server go on (SIGCONT)."""
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGCONT)

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGCONT)  # a stalled server cannot die until it runs
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


class RedisSentinelSet:
    """A master, two replicas and three sentinels on 127.0.0.1 (persistence off), each stopped
    by its own PID; :attr:`url` is the ``redis+sentinel://`` URL of service ``bot4``. After a
    failover the remaining replica follows the new master."""

    SERVICE = "bot4"

    def __init__(self) -> None:
        self._binary = redis_binary()
        self._dir = tempfile.mkdtemp(prefix="bot4-sentinel-")
        self.master_port = free_port()
        self.replica_ports = [free_port(), free_port()]
        self.sentinel_ports = [free_port() for _ in range(3)]
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.SERVICE}"

    def start(self) -> None:
        self._server(self.master_port)
        for port in self.replica_ports:
            self._server(port, "--replicaof", "127.0.0.1", str(self.master_port))
        for port in self.sentinel_ports:
            conf = os.path.join(self._dir, f"sentinel-{port}.conf")
            with open(conf, "w") as f:
                f.write(
                    f"port {port}\nbind 127.0.0.1\ndir {self._dir}\n"
                    f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.master_port} 2\n"
                    f"sentinel down-after-milliseconds {self.SERVICE} 400\n"
                    f"sentinel failover-timeout {self.SERVICE} 3000\n"
                    f"sentinel parallel-syncs {self.SERVICE} 1\n"
                )
            self._spawn(port, [self._binary, conf, "--sentinel"])
        for port in (self.master_port, *self.replica_ports, *self.sentinel_ports):
            _wait_pong(port)
        deadline = time.monotonic() + 30
        while not (
            all(self._role_info(port).get("master_link_status") == "up" for port in self.replica_ports)
            and self._sentinels_ready()
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("the replica and the sentinels did not come together")
            time.sleep(0.05)

    def _sentinels_ready(self) -> bool:
        """Every sentinel knows the replicas and the two other sentinels (a failover can be voted)."""
        import redis

        for port in self.sentinel_ports:
            client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, decode_responses=True)
            try:
                replicas = client.execute_command("SENTINEL", "replicas", self.SERVICE)
                others = client.execute_command("SENTINEL", "sentinels", self.SERVICE)
            except redis.RedisError:
                return False
            finally:
                client.close()
            if len(replicas) < len(self.replica_ports) or len(others) < 2:
                return False
        return True

    def _server(self, port: int, *extra: str) -> None:
        args = [self._binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
        self._spawn(port, [*args, "--dir", self._dir, "--loglevel", "warning", *extra])

    def _spawn(self, port: int, args: list[str]) -> None:
        self._procs[port] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _role_info(self, port: int) -> dict[str, str]:
        import redis

        try:
            client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, decode_responses=True)
            try:
                return {k: str(v) for k, v in client.info("replication").items()}
            finally:
                client.close()
        except redis.RedisError:
            return {}

    def master_now(self) -> int:
        """The port of the master the sentinels name now."""
        import redis

        for port in self.sentinel_ports:
            try:
                client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, decode_responses=True)
                host_port = client.execute_command("SENTINEL", "get-master-addr-by-name", self.SERVICE)
                client.close()
                return int(host_port[1])
            except (redis.RedisError, TypeError, IndexError):
                continue
        return -1

    def kill_master(self) -> None:
        """SIGKILL the master (by its PID): the sentinels promote the replica."""
        proc = self._procs.get(self.master_port)
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def close(self) -> None:
        for proc in self._procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        shutil.rmtree(self._dir, ignore_errors=True)


def _wait_pong(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"nothing answers on port {port}")
