"""``bot4 serve``: the live dashboard, its JSON API, WebSocket push, ``/metrics`` and control.

Built on aiohttp: one dependency gives the HTTP server, the WebSocket server and the
client the tests use, runs on the asyncio loop the rest of bot4 uses, and is already
installed with ccxt. Everything runs on one event loop thread that owns the attached core.

Security: bound to 127.0.0.1 unless told otherwise; on loopback the ``Host`` header must be
a loopback name (no DNS rebinding); control needs the token (``Authorization: Bearer``),
a same-origin request (``Origin`` / ``Sec-Fetch-Site``) with a JSON body of at most 16 KiB;
without a token the server is read-only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import signal
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot4._cli.dashboard.control import ControlError, perform
from bot4._cli.dashboard.prom import registry_for
from bot4._cli.dashboard.view import DeskView, journal_orders
from bot4._cli.status import simulated_clock
from bot4.core import Core
from bot4.errors import Bot4Error, ConfigError
from bot4.shm.lifecycle import live_holders
from bot4.shm.segment import Segment, shm_path

__all__ = ["MAX_BODY", "MAX_CLIENTS", "ServeConfig", "Server", "load_token", "new_token", "serve"]

log = logging.getLogger("bot4.serve")
MAX_BODY = 16 * 1024
"""Largest control request body accepted (bytes); a larger one gets 413."""
MAX_CLIENTS = 256
"""WebSocket clients served at once; one more gets 503."""
_URGENT_GAP = 0.02  # a breaker, fuse or trading-state change is pushed at once, at most every 20 ms
_STATIC = ("index.html", "dashboard.js", "dashboard.css")
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True, kw_only=True)
class ServeConfig:
    """How ``bot4 serve`` runs."""

    name: str
    """The segment to show."""
    host: str = "127.0.0.1"
    """Address to bind (loopback by default: a desk's dashboard is not for the network)."""
    port: int = 8464
    """TCP port (0: any free port)."""
    token: str | None = None
    """The control token; None: read-only (every control request gets 403)."""
    poll_interval: float = 0.01
    """Seconds between looks at the segment: a breaker, fuse or trading-state change is
    pushed at the next look."""
    coalesce: float = 0.25
    """Ledger figures (equity, positions) are pushed at most this often (seconds)."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError("name", f"expected a segment name, got {self.name!r}")
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError("host", f"expected an address, got {self.host!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError("port", f"expected a port in 0..65535, got {self.port!r}")
        if self.token is not None and (not isinstance(self.token, str) or len(self.token) < 16):
            raise ConfigError("token", "a control token has at least 16 characters")
        for field in ("poll_interval", "coalesce"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 10:
                raise ConfigError(field, f"expected seconds in (0, 10], got {value!r}")

    @property
    def loopback(self) -> bool:
        """Whether it binds a loopback address only."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def load_token(path: str) -> str:
    """The control token in the file at ``path`` (its first line), which only its owner may read."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block the start, a device worse
            raise ConfigError("token-file", f"{path} is not a regular file")
        with open(path, encoding="utf-8") as f:
            token = f.readline(4096).strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("token-file", f"cannot read {path}: {exc}") from None
    if st.st_mode & 0o077:
        raise ConfigError("token-file", f"{path} can be read by others (mode {st.st_mode & 0o777:o}): chmod 600 it")
    if len(token) < 16:
        raise ConfigError("token-file", f"{path}: the token (first line) must have at least 16 characters")
    return token


class _Client:
    """One WebSocket client: the latest payload waits for its sender (a slow client skips states)."""

    __slots__ = ("ws", "payload", "ready")

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.payload = ""
        self.ready = asyncio.Event()


class Server:
    """The dashboard server of one segment (start with :meth:`start`, stop with :meth:`stop`)."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self._core: Core | None = None
        self._clock_segment: Segment | None = None
        self._view: DeskView | None = None
        self._clients: set[_Client] = set()
        self._runner: web.AppRunner | None = None
        self._poller: asyncio.Task[None] | None = None
        self._payload = ""
        self._pushed_at = 0.0
        self._journal_reader: asyncio.Task[None] | None = None
        self._inode = 0
        self.port = 0
        """The port it listens on (once started)."""
        self.gone = asyncio.Event()
        """Set when the segment is removed (its desk ended): the server has nothing left to show."""

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Attach to the segment and start listening."""
        config = self.config
        simulated = simulated_clock(config.name)  # a desk on simulated time is read at its workers' time
        if simulated is not None:
            self._clock_segment = simulated[0]
        try:
            # an observer: a desk whose processes all ended is over, its name free to create again
            self._core = Core.attach(config.name, clock=None if simulated is None else simulated[1], observer=True)
        except BaseException:
            await self.stop()
            raise
        try:
            self._inode = os.stat(shm_path(config.name)).st_ino
            self._view = DeskView(self._core)
            self._registry = registry_for(self._core)
            self._payload = self._render()
            app = web.Application(client_max_size=MAX_BODY, middlewares=[self._guard])
            app.on_response_prepare.append(_secure)  # every answer, the router's own 404/405 included
            app.add_routes(
                [
                    web.get("/", self._index),
                    web.get("/static/{file}", self._static),
                    web.get("/api/state", self._state),
                    web.get("/api/health", self._health),
                    web.get("/ws", self._ws),
                    web.get("/metrics", self._metrics),
                    web.post("/api/control/{action}", self._control),
                ]
            )
            self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await self._runner.setup()
            site = web.TCPSite(self._runner, config.host, config.port, reuse_address=True)
            await site.start()
            server = site._server
            sockets = getattr(server, "sockets", None) or []
            self.port = sockets[0].getsockname()[1] if sockets else config.port
            self._poller = asyncio.create_task(self._poll())
            if self._core.journal is not None:
                self._journal_reader = asyncio.create_task(self._read_journal(str(self._core.journal.path)))
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Close every client, stop listening, detach (idempotent; every step bounded)."""
        for attr in ("_poller", "_journal_reader"):
            task = getattr(self, attr)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                setattr(self, attr, None)
        for client in list(self._clients):
            await _drop(client.ws)
        if self._runner is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._runner.cleanup(), timeout=5.0)
            self._runner = None
        if self._core is not None:
            self._core.close()
            self._core = None
        if self._clock_segment is not None:
            self._clock_segment.close()
            self._clock_segment = None

    @property
    def url(self) -> str:
        """The dashboard's address."""
        host = self.config.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}/"

    # ------------------------------------------------------------------ push

    def _render(self, *, full: bool = False) -> str:
        assert self._view is not None
        return json.dumps(self._view.state(full=full), separators=(",", ":"), allow_nan=False)

    async def _poll(self) -> None:
        view, config = self._view, self.config
        assert view is not None
        checked = time.monotonic()
        failed, failed_at = "", 0.0
        while True:
            await asyncio.sleep(config.poll_interval)
            try:
                urgent, changed = view.poll()
                now = time.monotonic()
                since = now - self._pushed_at
                if changed and since >= (_URGENT_GAP if urgent else config.coalesce):
                    self._push()
                    self._pushed_at = now
                elif changed:
                    view.keep(urgent)  # pushed at the first look past the gap
                if now - checked >= 1.0:
                    checked = now
                    ended = self._ended()
                    if ended:
                        log.warning("segment %s: %s; nothing left to show", config.name, ended)
                        self.gone.set()
                        return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a view that cannot be read now is retried at the next look
                said = f"{type(exc).__name__}: {exc}"
                if said != failed or time.monotonic() - failed_at >= 60.0:  # said once a minute, not per look
                    failed, failed_at = said, time.monotonic()
                    log.exception("reading segment %s failed", config.name)

    def _push(self) -> None:
        """Build the state once and hand it to every client (each takes the latest)."""
        self._payload = self._render()
        for client in self._clients:
            client.payload = self._payload
            client.ready.set()

    def _segment_present(self) -> bool:
        try:
            return os.stat(shm_path(self.config.name)).st_ino == self._inode
        except OSError:
            return False

    def _ended(self) -> str | None:
        """Why the desk it shows is over (its segment removed or replaced, every process of it
        dead), or None."""
        if not self._segment_present():
            return "it was removed"
        assert self._core is not None
        if not live_holders(self._core._segment):
            return "every process of the desk has ended"
        return None

    async def _read_journal(self, path: str) -> None:
        """Orders by status from the journal, every 2 s, in a thread (a query may take a while)."""
        assert self._view is not None
        while True:
            self._view.journal_orders = await asyncio.to_thread(journal_orders, path)
            await asyncio.sleep(2.0)

    # ------------------------------------------------------------------ guards

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if self.config.loopback and not _loopback_host(request.host):
            return _error(421, f"host {request.host!r} is not this server's (loopback only)")
        response = await handler(request)
        if not response.prepared:
            response.headers.update(_SECURITY_HEADERS)
        return response

    def _same_origin(self, request: web.Request) -> bool:
        site = request.headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            return False
        origin = request.headers.get("Origin")
        return origin is None or origin == f"{request.scheme}://{request.host}"

    # ------------------------------------------------------------------ handlers

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return _file("index.html")

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["file"]
        if name not in _STATIC:
            return _error(404, "no such file")
        return _file(name)

    async def _state(self, request: web.Request) -> web.StreamResponse:
        if not self._segment_present():
            return _error(410, "the desk's segment is gone")
        return web.Response(text=self._render(full=True), content_type="application/json")

    async def _health(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"segment": self.config.name, "read_only": self.config.token is None})

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        if not self._segment_present():  # a scrape of a desk that is gone is a failed scrape
            return _error(410, "the desk's segment is gone")
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if not self._same_origin(request):
            return _error(403, "cross-origin WebSocket refused")
        if len(self._clients) >= MAX_CLIENTS:
            return _error(503, f"{MAX_CLIENTS} dashboard clients are connected already")
        if not self._segment_present():
            return _error(410, "the desk's segment is gone")
        ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=4096)
        await ws.prepare(request)
        client = _Client(ws)
        client.payload = self._render(full=True)  # the whole history first; pushes then carry its newest points
        client.ready.set()
        self._clients.add(client)
        sender = asyncio.create_task(self._send(client))
        try:
            async for msg in ws:  # the page sends nothing that matters; anything else ends it
                if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            self._clients.discard(client)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
            await _drop(ws)
        return ws

    async def _send(self, client: _Client) -> None:
        while not client.ws.closed:
            await client.ready.wait()
            client.ready.clear()
            try:
                await asyncio.wait_for(client.ws.send_str(client.payload), timeout=5.0)
            except (TimeoutError, ConnectionError, RuntimeError):
                await _drop(client.ws, abort=True)  # a client that cannot take a state for 5 s is dropped
                return

    async def _control(self, request: web.Request) -> web.StreamResponse:
        token = self.config.token
        if token is None:
            return _error(403, "read-only: this server has no control token (start it with --token-file)")
        if not self._same_origin(request):
            return _error(403, "cross-origin control request refused")
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        presented = value.strip().encode("utf-8", "surrogateescape")  # the bytes as sent, whatever they are
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented, token.encode()):
            return _error(401, "a valid control token is required (Authorization: Bearer <token>)")
        if request.content_type != "application/json":
            return _error(415, "the body must be application/json")
        if request.content_length is not None and request.content_length > MAX_BODY:
            return _error(413, f"the body is larger than {MAX_BODY} bytes")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"the body is larger than {MAX_BODY} bytes")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return _error(400, "the body is not JSON (or nested too deep)")
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object")
        assert self._core is not None and self._view is not None
        if not self._segment_present():  # replaced by a new desk of the same name: not this one's to act on
            return _error(410, "the desk's segment is gone (a new desk of its name is another server's)")
        peer = request.remote or "?"
        try:
            done = perform(self._core, request.match_info["action"], body, peer)
        except ControlError as exc:
            return _error(exc.status, str(exc))
        except Bot4Error as exc:
            return _error(409, str(exc))
        log.warning("control: %s", done)
        self._view.poll()
        self._push()
        return web.json_response({"ok": True, "done": done})


async def _secure(request: web.Request, response: web.StreamResponse) -> None:
    for key, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)


async def _drop(ws: web.WebSocketResponse, *, abort: bool = False) -> None:
    """Close a WebSocket without waiting on a client that does not read: a close frame given
    1 s to leave (none with ``abort``), then the connection cut."""
    if not abort:
        with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
            await asyncio.wait_for(ws.close(drain=False), timeout=1.0)
            return
    request = ws._req
    transport = None if request is None else request.transport
    if transport is not None:
        transport.abort()


def _loopback_host(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"ok": False, "error": message}, status=status, headers=_SECURITY_HEADERS)


def _file(name: str) -> web.Response:
    text = resources.files("bot4._cli.dashboard").joinpath("static", name).read_text(encoding="utf-8")
    return web.Response(text=text, content_type=_TYPES[Path(name).suffix], charset="utf-8")


async def serve(config: ServeConfig, ready: Callable[[Server], Any] | None = None) -> int:
    """Run the server until interrupted or until its segment is removed; return an exit code."""
    server = Server(config)
    await server.start()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # SIGTERM ends it in order, as Ctrl-C does
        loop.add_signal_handler(signal.SIGTERM, server.gone.set)
    try:
        if ready is not None:
            ready(server)
        await server.gone.wait()
        return 0
    finally:
        await server.stop()


def new_token() -> str:
    """A fresh control token."""
    return secrets.token_urlsafe(24)
