"""A host's link to the fleet: its segment stays the fast local view, Redis holds the truth.

Local breaker transitions go to Redis (atomic scripts on the server's clock) and come back
to every other host by pub/sub; each host sends its breakers' window counts once per
bucket, and the fleet's window (their sum) trips a breaker everywhere when it meets a rate
threshold; half-open trial permits and trial successes are counted fleet-wide; the kill
switch is the desk's; a risk reservation is approved only when the fleet's gross exposure
stays within the limit. The closed path of a breaker call never touches Redis. When Redis cannot be reached the :class:`FleetPolicy` applies, and the
fleet state is read again when it comes back.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Any

from bot4.breaker.state import BreakerState
from bot4.errors import ConfigError
from bot4.fleet import scripts
from bot4.fleet.policy import FleetPolicy
from bot4.plugins.manager import notify
from bot4.risk.limits import TradingState
from bot4.shm import layout as L

if TYPE_CHECKING:
    from bot4.breaker.breaker import CircuitBreaker
    from bot4.core import Core

__all__ = ["FleetLink"]

log = logging.getLogger("bot4.fleet")

_AUTOMATIC = {
    (BreakerState.CLOSED, BreakerState.OPEN),
    (BreakerState.HALF_OPEN, BreakerState.OPEN),
    (BreakerState.HALF_OPEN, BreakerState.CLOSED),
}
"""Transitions a breaker makes by itself: applied in the fleet only from the state they left."""
_UNREACHABLE = "fleet unreachable (fail-closed)"


class FleetLink:
    """The link of one process's core to the fleet (made by :meth:`bot4.Core.connect`)."""

    def __init__(self, core: Core, url: str, *, desk: str, host: str, policy: FleetPolicy) -> None:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - the extra is part of the test set-up
            raise ConfigError("url", "the Redis backend needs redis-py: pip install 'bot4[redis]'") from exc
        for field_name, value in (("desk", desk), ("host", host)):
            if not isinstance(value, str) or not value or any(c in value for c in "{}|") or not value.isprintable():
                raise ConfigError(field_name, f"must be a printable name without braces or '|', got {value!r}")
        if not isinstance(policy, FleetPolicy):
            raise ConfigError("policy", f"expected a FleetPolicy, got {type(policy).__name__}")
        try:
            self._client = redis.Redis.from_url(
                url,
                socket_timeout=policy.socket_timeout,
                socket_connect_timeout=policy.socket_timeout,
                decode_responses=True,
            )
        except ValueError as exc:
            raise ConfigError("url", f"not a Redis URL: {exc}") from None
        self._errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
        self._args: dict[str, Any] = {"url": url, "desk": desk, "host": host, "policy": policy}
        self._core = core
        self._policy = policy
        self.desk = desk
        """The desk: the fleet's unit of shared state (its keys share the hash tag ``{desk}``)."""
        self.host = f"{host}/{core.name}"
        """This host's name in the fleet (its exposure is counted under it)."""
        prefix = f"bot4:{{{desk}}}:"
        self._prefix = prefix
        self._channel = prefix + "events"
        self._desk_key = prefix + "desk"
        self._exposure_key = prefix + "exposure"
        self._script = {
            name: self._client.register_script(getattr(scripts, name))
            for name in ("READ", "SET_STATE", "PERMIT", "SUCCESS", "SET_TRADING", "CLAIM", "WINDOW")
        }
        self._connected = False
        self._state_lock = threading.RLock()
        self._local = threading.local()
        self._gens: dict[str, int] = {}
        self._forced: set[str] = set()
        self._windows: dict[str, tuple[float, tuple[int, int, int]]] = {}  # name -> (sent at, counts sent)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def connect_args(self) -> dict[str, Any]:
        """``url``, ``desk``, ``host`` and ``policy``: what another process passes to
        :meth:`bot4.Core.connect` (with ``attach=True``) to join the fleet the same way."""
        return dict(self._args)

    @property
    def connected(self) -> bool:
        """Whether Redis answered the last time it was asked."""
        return self._connected

    def start(self) -> None:
        """Read the fleet state (before this process's first call) and start listening."""
        try:
            self._client.ping()
            self._resync()
            self._connected = True
        except self._errors as exc:
            self._connected = True  # so that _lost applies the policy once
            self._lost(exc)
        self._thread = threading.Thread(target=self._listen, name=f"bot4-fleet-{self.desk}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop listening and close the connections (idempotent)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        self._client.close()

    def _key(self, breaker: str) -> str:
        return f"{self._prefix}breaker:{breaker}"

    def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        return self._script[script](keys=keys, args=args)

    # ------------------------------------------------------------------ breakers (called by the core)

    def breaker_changed(self, breaker: CircuitBreaker, old: BreakerState, new: BreakerState, reason: str) -> None:
        """A local transition: make it the fleet's (unless it came from the fleet)."""
        if getattr(self._local, "applying", False) or not self._connected:
            return
        if old is BreakerState.OPEN and new is BreakerState.HALF_OPEN:
            return  # the fleet moves to half-open when it hands out the first trial permit
        expected = int(old) if (old, new) in _AUTOMATIC else -1
        span = breaker._deadline_ns() // 1_000_000 if new in (BreakerState.OPEN, BreakerState.HALF_OPEN) else 0
        try:
            applied, state, gen, left = self._run(
                "SET_STATE",
                [self._key(breaker.name), self._channel],
                [breaker.name, expected, int(new), span, f"{reason} (on {self.host})"],
            )
        except self._errors as exc:
            self._lost(exc)
            return
        self._gens[breaker.name] = max(self._gens.get(breaker.name, 0), int(gen))
        if not applied:  # another host moved first: take its state
            self._adopt(breaker, int(state), int(left), "taken from the fleet")

    def adopt_breaker(self, breaker: CircuitBreaker) -> None:
        """Read ``breaker``'s fleet state (a process's first use of it)."""
        if getattr(self._local, "syncing", False):
            return  # this thread's resynchronisation reads it
        if not self._connected:
            self._apply_policy(breaker)
            return
        try:
            self._sync_breaker(breaker)
        except self._errors as exc:
            self._lost(exc)

    def permit(self, breaker: CircuitBreaker, budget: int) -> bool:
        """One trial permit of the fleet-wide half-open budget."""
        if not self._connected:
            return not self._policy.fails_closed(breaker.name)
        span = int(breaker.config.half_open_max_seconds * 1000)
        try:
            granted, state, gen, left = self._run(
                "PERMIT", [self._key(breaker.name), self._channel], [breaker.name, budget, span]
            )
        except self._errors as exc:
            self._lost(exc)
            return not self._policy.fails_closed(breaker.name)
        if not granted and int(state) != BreakerState.HALF_OPEN:
            self._adopt(breaker, int(state), int(left), "taken from the fleet")
        return bool(granted)

    def trial_succeeded(self, breaker: CircuitBreaker) -> bool:
        """Count a successful trial fleet-wide; False when the fleet is unreachable (count locally)."""
        if not self._connected:
            return False
        budget = breaker.config.half_open_calls
        try:
            closed, state, gen, left = self._run(
                "SUCCESS", [self._key(breaker.name), self._channel], [breaker.name, budget]
            )
        except self._errors as exc:
            self._lost(exc)
            return False
        if closed or int(state) != BreakerState.HALF_OPEN:
            self._adopt(breaker, int(state), int(left), "trial calls succeeded across the fleet")
        return True

    def _send_windows(self) -> None:
        """Once per bucket, each closed breaker's window counts to the fleet's window (which may trip it)."""
        now = time.monotonic()
        for name in self._core.breaker_names():
            breaker = self._core.breaker(name)
            config = breaker.config
            sent_at, sent = self._windows.get(name, (-math.inf, (-1, -1, -1)))
            if now - sent_at < config.window_seconds / L.BUCKETS or breaker.state is not BreakerState.CLOSED:
                continue
            counts = breaker._gate.counts()
            if counts == sent and now - sent_at < config.window_seconds / 2:
                continue  # nothing new, and what was sent still counts
            self._windows[name] = (now, counts)
            slow_rate = config.slow_call_rate_threshold if config.slow_call_seconds is not None else -1
            self._run(
                "WINDOW",
                [f"{self._prefix}window:{name}", self._key(name), self._channel],
                [
                    name,
                    self.host,
                    *counts,
                    int(config.window_seconds * 1000),
                    config.minimum_calls,
                    repr(config.failure_rate_threshold),
                    repr(slow_rate),
                    breaker._open_ns(0) // 1_000_000,
                ],
            )

    def _sync_breaker(self, breaker: CircuitBreaker) -> None:
        exists, state, gen, left = self._run("READ", [self._key(breaker.name)], [])
        name = breaker.name
        if exists:
            self._gens[name] = int(gen)
            self._adopt(breaker, int(state), int(left), "fleet state read")
            self._forced.discard(name)
            return
        self._gens.pop(name, None)  # a Redis restarted empty counts generations from 1 again
        local = breaker.state
        if name in self._forced:  # forced open by the policy only: the fleet (restarted empty) says closed
            self._forced.discard(name)
            self._adopt(breaker, int(BreakerState.CLOSED), 0, "fleet reachable again")
            return
        if local is not BreakerState.CLOSED:  # the fleet lost it (a restarted Redis): this host knows better
            span = breaker._deadline_ns() // 1_000_000
            reply = self._run("SET_STATE", [self._key(name), self._channel], [name, -1, int(local), span, "restored"])
            self._gens[name] = int(reply[2])

    def _adopt(self, breaker: CircuitBreaker, state: int, left_ms: int, reason: str) -> None:
        self._local.applying = True
        try:
            breaker._adopt(BreakerState(state), left_ms * 1_000_000, reason)
        finally:
            self._local.applying = False

    # ------------------------------------------------------------------ risk (called by the risk engine)

    def trading_changed(self, state: TradingState, reason: str) -> None:
        """A local kill-switch change: make it the desk's."""
        if getattr(self._local, "applying", False) or not self._connected:
            return
        try:
            self._run("SET_TRADING", [self._desk_key, self._channel], [int(state), reason])
        except self._errors as exc:
            self._lost(exc)

    def claim(self, *, checked: bool) -> str | None:
        """Put this host's gross exposure in the fleet's; None when accepted, else a rejection code.

        ``checked``: refuse when it would take the fleet past ``max_gross_exposure`` times
        the equity this host's ledger holds (each host of a desk sets the desk's equity).
        Unchecked claims (a release, a fill, a price) are never refused; one that cannot
        reach Redis is made good by the next claim or the resynchronisation.
        """
        if not self._connected:
            return "FLEET_UNAVAILABLE"
        try:
            accepted = self._push_exposure(checked)
        except self._errors as exc:
            self._lost(exc)
            return "FLEET_UNAVAILABLE"
        return None if accepted else "FLEET_EXPOSURE"

    def _push_exposure(self, checked: bool) -> bool:
        risk = self._core.risk
        gross, equity, version = risk._exposure_figures()
        multiple = risk.limits.max_gross_exposure  # of equity: every host of a desk sets the desk's equity
        limit = -1.0 if multiple is None else multiple * max(equity, 0.0)
        accepted, _total = self._run(
            "CLAIM", [self._exposure_key], [self.host, repr(gross), version, repr(limit), 1 if checked else 0]
        )
        return bool(accepted)

    def fleet_gross(self) -> float:
        """The fleet's gross exposure: the sum of every host's."""
        values: dict[str, str] = self._client.hgetall(self._exposure_key)  # type: ignore[assignment]
        return sum((float(v) for k, v in values.items() if k.startswith("g:")), 0.0)

    # ------------------------------------------------------------------ listening, losing, resynchronising

    def _listen(self) -> None:
        pubsub = None
        while not self._stop.is_set():
            try:
                if pubsub is None:
                    pubsub = self._client.pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(self._channel)  # before reading: nothing announced in between is missed
                    if not self._connected:
                        self._resync()
                        self._set_connected(True, "fleet reachable: state read again")
                message = pubsub.get_message(timeout=0.05)
                if message is not None and message.get("type") == "message":
                    self._apply(message["data"])
                self._send_windows()
            except self._errors as exc:
                self._lost(exc)
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # noqa: BLE001 - a broken connection may fail to close
                        pass
                pubsub = None
                self._stop.wait(self._policy.retry_seconds)
            except Exception:  # noqa: BLE001 - a listener must not die on one bad message
                log.exception("fleet %s: could not apply a message", self.desk)
        if pubsub is not None:
            try:
                pubsub.close()
            except Exception:  # noqa: BLE001
                pass

    def _apply(self, data: str) -> None:
        event = json.loads(data)
        if event.get("kind") == "breaker":
            name, gen = str(event["name"]), int(event["gen"])
            if gen <= self._gens.get(name, 0) or name not in self._core.breaker_names():
                return
            self._gens[name] = gen
            self._adopt(self._core.breaker(name), int(event["state"]), int(event["left"]), str(event["reason"]))
        elif event.get("kind") == "trading":
            gen = int(event["gen"])
            if gen <= self._gens.get("\0trading", 0):
                return
            self._gens["\0trading"] = gen
            self._adopt_trading(TradingState(int(event["state"])), str(event["reason"]))

    def _adopt_trading(self, state: TradingState, reason: str) -> None:
        risk = self._core.risk
        if risk.trading_state is state and risk.state_reason == reason:
            return
        self._local.applying = True
        try:
            risk.set_trading_state(state, reason)
        finally:
            self._local.applying = False

    def _resync(self) -> None:
        """Read the fleet's state into this host (and give the fleet what only this host knows)."""
        with self._state_lock:
            self._local.syncing = True
            try:
                breakers = [self._core.breaker(name) for name in self._core.breaker_names()]
            finally:
                self._local.syncing = False
            for breaker in breakers:
                self._sync_breaker(breaker)
            desk: list[str | None] = self._client.hmget(  # type: ignore[assignment]
                self._desk_key, ["trading", "reason", "trading_gen"]
            )
            risk = self._core.risk
            self._gens["\0trading"] = int(desk[2] or 0)
            if desk[0] is not None:
                self._adopt_trading(TradingState(int(desk[0])), desk[1] or "")
            elif risk.trading_state is not TradingState.ACTIVE:
                gen = self._run(
                    "SET_TRADING", [self._desk_key, self._channel], [int(risk.trading_state), risk.state_reason]
                )
                self._gens["\0trading"] = int(gen)
            self._push_exposure(checked=False)

    def _lost(self, exc: BaseException) -> None:
        with self._state_lock:
            if not self._connected:
                return
            self._connected = False
            log.warning("fleet %s unreachable: %s", self.desk, exc)
            for name in self._core.breaker_names():
                self._apply_policy(self._core.breaker(name))
        notify(self._core.plugins, "bot4_fleet_changed", core=self._core, connected=False, reason=f"unreachable: {exc}")

    def _apply_policy(self, breaker: CircuitBreaker) -> None:
        if not self._policy.fails_closed(breaker.name):
            return
        self._forced.add(breaker.name)
        self._adopt(breaker, int(BreakerState.FORCED_OPEN), 0, _UNREACHABLE)

    def _set_connected(self, connected: bool, reason: str) -> None:
        self._connected = connected
        log.info("fleet %s: %s", self.desk, reason)
        notify(self._core.plugins, "bot4_fleet_changed", core=self._core, connected=connected, reason=reason)
