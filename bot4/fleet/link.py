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

from bot4.breaker.fuse import FORCED_BY_POLICY
from bot4.breaker.state import BreakerState
from bot4.errors import ConfigError, FleetUnavailableError
from bot4.fleet import scripts
from bot4.fleet.client import make_client
from bot4.fleet.policy import FleetPolicy
from bot4.plugins.dispatch import notify
from bot4.risk.exposure import host_figures
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
_STATES = frozenset(int(s) for s in BreakerState)


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
        self._client = make_client(url, timeout=policy.socket_timeout)
        # Anything redis-py raises (a lost connection, a timeout, a server loading its data or
        # read-only after a failover) counts as a fleet it cannot rely on now: fail closed.
        self._errors = (redis.exceptions.RedisError, redis.exceptions.TimeoutError)
        self._closed_error = redis.exceptions.ConnectionError
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
            for name in (
                "READ",
                "SET_STATE",
                "PERMIT",
                "SUCCESS",
                "SET_TRADING",
                "WINDOW",
                "REGISTER",
                "CLAIM",
                "SYNC",
                "RENEW",
                "FORGET",
            )
        }
        self._connected = False
        self._state_lock = threading.RLock()  # resyncs and losses (held across Redis calls)
        self._offline_lock = threading.Lock()  # "connected" and the operator actions kept meanwhile (never across I/O)
        self._local = threading.local()
        self._gens: dict[str, int] = {}
        self._forced: set[str] = set()
        self._windows: dict[str, tuple[float, tuple[int, int, int]]] = {}  # name -> (sent at, counts sent)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._epoch = 0  # the exposure epoch this host registered in (0: never)
        self._seen = 0  # the highest exposure sequence seen in that epoch
        self._mine = 0  # the newest ledger version this process wrote to the fleet in that epoch
        self._incarnation = str(core._context.segment.region.load(L.H_CREATED_NS))  # this segment, not its name
        self._grace_until = 0.0  # monotonic: a new epoch approves nothing before (its grace)
        self._members: dict[str, tuple[float, int]] = {}  # host -> (exposure, lease until, server ms)
        # Operator actions taken here while the fleet was unreachable, given to it at resync:
        self._offline_trading: tuple[TradingState, str, int] | None = None  # (state, reason, fleet gen then)
        self._offline_breakers: dict[str, tuple[BreakerState, str, int]] = {}  # name -> (state, reason, gen then)
        self._renewed_at = -math.inf

    # ------------------------------------------------------------------ lifecycle

    def connect_args(self) -> dict[str, Any]:
        """``url``, ``desk``, ``host`` and ``policy``: what another process passes to
        :meth:`bot4.Core.connect` (with ``attach=True``) to join the fleet the same way."""
        return dict(self._args)

    @property
    def policy(self) -> FleetPolicy:
        """What this host does while Redis is unreachable, and how it checks it."""
        return self._policy

    @property
    def connected(self) -> bool:
        """Whether Redis answered the last time it was asked."""
        return self._connected

    def start(self) -> None:
        """Subscribe, read the fleet state (before this process's first call: nothing announced
        in between is missed), and start listening."""
        pubsub = None
        try:
            pubsub = self._subscribe()
            self._resync()
            self._connected = True
        except (*self._errors, TimeoutError) as exc:
            self._connected = True  # so that _lost applies the policy once
            self._lost(exc)
            _closed(pubsub)
            pubsub = None
        self._thread = threading.Thread(
            target=self._listen, args=(pubsub,), name=f"bot4-fleet-{self.desk}", daemon=True
        )
        self._thread.start()
        grace = self._grace_until - time.monotonic()
        if self._connected and grace > 0:  # a new exposure epoch: the hosts alive register meanwhile
            self._stop.wait(min(grace, self._policy.lease_seconds))

    def close(self) -> None:
        """Stop listening and close the connections (idempotent). Calls made meanwhile by other
        threads find the fleet unavailable."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2 + 4 * self._policy.socket_timeout)
        self._client.close()

    def _key(self, breaker: str) -> str:
        return f"{self._prefix}breaker:{breaker}"

    def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return self._script[script](keys=keys, args=args)
        except self._errors:
            raise
        except Exception as exc:
            if self._stop.is_set():  # the client closed under this call (close() from another thread)
                raise self._closed_error("the fleet link is closed") from exc
            raise

    # ------------------------------------------------------------------ breakers (called by the core)

    def breaker_changed(self, breaker: CircuitBreaker, old: BreakerState, new: BreakerState, reason: str) -> None:
        """A local transition: make it the fleet's (unless it came from the fleet). One made
        while the fleet is unreachable is given to it at resync (:meth:`_sync_breaker`)."""
        if getattr(self._local, "applying", False):
            return
        with self._offline_lock:
            if not self._connected:  # (checked under the lock the listener turns it on under)
                self._note_offline_breaker(breaker, old, new, reason)
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
            with self._offline_lock:
                self._note_offline_breaker(breaker, old, new, reason)  # given to the fleet at resync
            self._lost(exc)
            return
        self._gens[breaker.name] = max(self._gens.get(breaker.name, 0), int(gen))
        if not applied:  # another host moved first: take its state
            self._adopt(breaker, int(state), int(left), "taken from the fleet")

    def _note_offline_breaker(self, breaker: CircuitBreaker, old: BreakerState, new: BreakerState, reason: str) -> None:
        """Keep an operator's action (or a trip) for the fleet's resync; the caller holds the offline lock."""
        if (old, new) not in _AUTOMATIC or new is BreakerState.OPEN:  # an operator's, or a trip
            self._offline_breakers[breaker.name] = (new, reason, self._gens.get(breaker.name, 0))
            self._forced.discard(breaker.name)  # no longer the policy's alone

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
        with self._offline_lock:
            offline = self._offline_breakers.pop(name, None)  # (put back if giving it to the fleet fails)
        if offline is not None:
            local, why, gen_then = offline
            safer = local in (BreakerState.OPEN, BreakerState.FORCED_OPEN)
            if safer or not exists or int(gen) == gen_then:  # a trip or force always stands; else if nobody moved it
                span = 0
                if local is BreakerState.OPEN:  # what is left of its open period, or a whole one
                    span = breaker._deadline_ns() // 1_000_000 if breaker.state is local else 0
                    span = span or breaker._open_ns(0) // 1_000_000
                reason = f"{why} (on {self.host} while the fleet was unreachable)"
                try:
                    reply = self._run(
                        "SET_STATE", [self._key(name), self._channel], [name, -1, int(local), span, reason]
                    )
                except self._errors:
                    with self._offline_lock:
                        self._offline_breakers.setdefault(name, offline)
                    raise
                self._gens[name] = int(reply[2])
                self._forced.discard(name)
                self._adopt(breaker, int(local), span, reason)
                log.warning(
                    "fleet %s: breaker %s: kept %s set here during the outage (%s)", self.desk, name, local.name, why
                )
                return
            log.warning(
                "fleet %s: breaker %s: %s set here during the outage is dropped: the fleet moved it meanwhile",
                self.desk,
                name,
                local.name,
            )
        if exists and int(state) not in _STATES:  # garbage in Redis: this host's state replaces it
            log.warning(
                "fleet %s: breaker %s: unknown state %r in Redis replaced by this host's", self.desk, name, state
            )
            exists = 0
            self._forced.discard(name)
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
        if state not in _STATES:
            log.warning(
                "fleet %s: breaker %s: the fleet holds an unknown state %r: ignored", self.desk, breaker.name, state
            )
            return
        self._local.applying = True
        try:
            breaker._adopt(BreakerState(state), left_ms * 1_000_000, reason)
        finally:
            self._local.applying = False

    # ------------------------------------------------------------------ risk (called by the risk engine)

    def trading_changed(self, state: TradingState, reason: str) -> None:
        """A local kill-switch change: make it the desk's (while the fleet is unreachable: at resync)."""
        if getattr(self._local, "applying", False):
            return
        with self._offline_lock:
            if not self._connected:  # (checked under the lock the listener turns it on under)
                self._offline_trading = (state, reason, self._gens.get("\0trading", 0))
                return
        try:
            self._run("SET_TRADING", [self._desk_key, self._channel], [int(state), reason])
        except self._errors as exc:
            with self._offline_lock:  # given to the fleet at resync
                self._offline_trading = (state, reason, self._gens.get("\0trading", 0))
            self._lost(exc)

    def claim(self, reservation_id: int, notional: float) -> str | None:
        """Count a reservation in the fleet's exposure; None when approved, else a rejection code.

        Refused (``FLEET_EXPOSURE``) when it would take the fleet past ``max_gross_exposure``
        times the equity this host's ledger holds (each host of a desk sets the desk's
        equity); ``FLEET_RESYNC`` while the fleet waits for hosts to register after a reset;
        ``FLEET_UNAVAILABLE`` when Redis cannot be reached; ``FLEET_UNREPLICATED`` when fewer
        than ``policy.replicas`` replicas acknowledged it in time (it is undone).
        """
        if not self._connected:
            return "FLEET_UNAVAILABLE"
        try:
            for _ in range(2):
                _gross, equity, version = self._core.risk._exposure_figures()
                multiple = self._core.risk.limits.max_gross_exposure
                limit = -1.0 if multiple is None else multiple * max(equity, 0.0)
                args = [*self._me(), reservation_id, repr(notional), version, repr(limit)]
                code, _total, seq, acked = self._claim(args)
                if code != "epoch":
                    break
                self._register()
            if code == "ok" and acked < self._policy.replicas:  # it might not survive a failover: undone
                self.sync((reservation_id,))
                log.warning(
                    "fleet %s: a reservation reached %d of %d replicas: refused",
                    self.desk,
                    acked,
                    self._policy.replicas,
                )
                return "FLEET_UNREPLICATED"
        except self._errors as exc:
            self._lost(exc)
            return "FLEET_UNAVAILABLE"
        if code == "ok":
            self._wrote(int(seq), version)
            return None
        return "FLEET_EXPOSURE" if code == "limit" else "FLEET_RESYNC"

    def _me(self) -> list[Any]:
        """What every exposure script is told first: who asks, and what it has seen and written."""
        return [self.host, self._epoch, self._seen, self._incarnation, self._mine]

    def _claim(self, args: list[Any]) -> tuple[str, str, int, int]:
        """Run CLAIM; with ``policy.replicas``, on one connection followed by ``WAIT`` (how many
        replicas acknowledged it within half the ``socket_timeout``)."""
        keys = [self._exposure_key, self._channel]
        replicas = self._policy.replicas
        if not replicas:
            code, total, seq = self._run("CLAIM", keys, args)
            return str(code), str(total), int(seq), 0
        pipe = self._client.pipeline(transaction=False)
        self._script["CLAIM"](keys=keys, args=args, client=pipe)
        pipe.execute_command("WAIT", replicas, max(1, int(self._policy.socket_timeout * 500)))
        (code, total, seq), acked = pipe.execute()
        return str(code), str(total), int(seq), int(acked)

    def sync(self, ended: tuple[int, ...] = ()) -> None:
        """Give the fleet this host's positions now and the reservations that ``ended``
        (released, filled, reclaimed). Never refused; one that cannot reach Redis is made
        good by the registration when Redis is back."""
        if not self._connected:
            return
        try:
            figures = host_figures(self._core.risk)
            args = [*self._me(), repr(figures.positions), figures.version, *ended]
            code, seq = self._run("SYNC", [self._exposure_key], args)
            if code == "epoch":
                self._register()
            else:
                self._wrote(int(seq), figures.version)
        except self._errors as exc:
            self._lost(exc)

    def _wrote(self, seq: int, version: int) -> None:
        if seq > self._seen:
            self._seen = seq
        if version > self._mine:
            self._mine = version

    def _register(self) -> None:
        """Give the fleet this host's whole exposure, replacing what it held (and, after a
        Redis lost or rolled back its state, what this host knows of the others)."""
        with self._state_lock:
            figures = host_figures(self._core.risk, reservations=True)
            live = [
                str(v)
                for res_id, notional, approved in figures.reservations
                for v in (res_id, repr(notional), int(approved))
            ]
            members = dict(self._members)  # (a copy: the listener updates it)
            known = [str(v) for host, (amount, lease) in members.items() for v in (host, repr(amount), lease)]
            lease = self._lease_ms()
            args = [*self._me(), repr(figures.positions), figures.version, lease, lease, len(figures.reservations)]
            epoch, seq, status, grace = self._run("REGISTER", [self._exposure_key], [*args, *live, *known])
            if status in ("lost", "rolled back") and self._epoch:
                log.warning(
                    "fleet %s: exposure state %s; epoch %d started: reservations wait until every host with a live "
                    "lease has registered again",
                    self.desk,
                    "lost (Redis came back empty)" if status == "lost" else "rolled back",
                    int(epoch),
                )
            elif status != "ok":
                log.info("fleet %s: registered in exposure epoch %d (%s)", self.desk, int(epoch), status)
            self._epoch, self._seen, self._mine = int(epoch), int(seq), figures.version
            self._grace_until = time.monotonic() + int(grace) / 1000

    def _lease_ms(self) -> int:
        return int(self._policy.lease_seconds * 1000)

    def _renew(self) -> None:
        """Renew this host's lease and learn the members' exposures (what a reset would count)."""
        reply = self._run("RENEW", [self._exposure_key], [*self._me(), self._lease_ms()])
        if reply[0] == "epoch":
            self._register()
            return
        self._wrote(int(reply[1]), 0)
        self._members = {str(reply[i]): (float(reply[i + 1]), int(reply[i + 2])) for i in range(2, len(reply) - 2, 3)}

    def forget(self, host: str) -> bool:
        """An operator's word that ``host`` is gone and holds nothing: the fleet stops counting its
        last known exposure and stops waiting for it. Returns whether it was counted or waited for.

        Raises:
            FleetUnavailableError: Redis cannot be reached.
        """
        if not isinstance(host, str) or not host:
            raise ConfigError("host", f"expected a host name, got {host!r}")
        try:
            return bool(self._run("FORGET", [self._exposure_key], [host]))
        except self._errors as exc:
            raise FleetUnavailableError(self.desk, str(exc)) from None

    def fleet_gross(self) -> float:
        """The fleet's exposure: every host's positions and live reservations, with the last
        known exposure of hosts not registered again since a reset.

        Raises:
            FleetUnavailableError: Redis cannot be reached.
        """
        try:
            values: dict[str, str] = self._client.hgetall(self._exposure_key)
        except self._errors as exc:
            raise FleetUnavailableError(self.desk, str(exc)) from None
        total = 0.0
        for field, value in values.items():
            if field.startswith(("g:", "x:")):
                total += float(value)
            elif field.startswith("r:"):
                total += float(value.partition(",")[0])
        return total

    # ------------------------------------------------------------------ listening, losing, resynchronising

    def _subscribe(self) -> Any:
        """A pub/sub connection subscribed to the desk's announcements, the subscription
        confirmed by the server (so a state read after it misses nothing announced later)."""
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self._channel)
            deadline = time.monotonic() + self._policy.socket_timeout
            while True:
                reply = pubsub.parse_response(block=False, timeout=max(0.0, deadline - time.monotonic()))
                if isinstance(reply, list) and reply and str(reply[0]) == "subscribe":
                    return pubsub
                if reply is None and time.monotonic() >= deadline:
                    raise TimeoutError(f"no confirmation of the subscription in {self._policy.socket_timeout}s")
        except BaseException:
            _closed(pubsub)
            raise

    def _listen(self, pubsub: Any = None) -> None:
        """Apply the fleet's announcements; check both connections (a pub/sub ping sent after
        ``health_seconds`` of silence and unanswered ``health_seconds + socket_timeout`` later,
        or a lease renewal that fails, is a lost fleet); reconnect and resynchronise when Redis
        answers again."""
        health, timeout = self._policy.health_seconds, self._policy.socket_timeout
        heard_at, pinged_at = time.monotonic(), 0.0
        while not self._stop.is_set():
            try:
                if pubsub is None:
                    pubsub = self._subscribe()  # before reading: nothing announced in between is missed
                    heard_at, pinged_at = time.monotonic(), 0.0
                if not self._connected:  # (also when another thread found Redis gone while this one heard nothing)
                    self._resync()
                    with self._offline_lock:  # connected only once no operator action taken meanwhile waits
                        if self._offline_trading is None and not self._offline_breakers:
                            self._connected = True
                    if self._connected:
                        self._set_connected(True, "fleet reachable: state read again")
                # Read raw: a pong to a ping made on a subscribed connection comes back as a bare
                # string once decoded, which redis-py's get_message does not report.
                response = pubsub.parse_response(block=False, timeout=0.05)
                now = time.monotonic()
                if response is not None:
                    heard_at, pinged_at = now, 0.0  # anything heard: the connection is alive
                    if not isinstance(response, (str, bytes)):
                        message = pubsub.handle_message(response, ignore_subscribe_messages=True)
                        if message is not None and message.get("type") == "message":
                            self._apply(message["data"])
                if pinged_at and now - pinged_at > health + timeout:
                    raise TimeoutError(f"no answer to a ping on the pub/sub connection in {health + timeout}s")
                if not pinged_at and now - heard_at >= health:
                    pubsub.ping("bot4")
                    pinged_at = now
                if now - self._renewed_at >= health:
                    self._renewed_at = now
                    self._renew()
                self._send_windows()
            except (*self._errors, TimeoutError) as exc:
                self._lost(exc)
                _closed(pubsub)
                pubsub = None
                self._stop.wait(self._policy.retry_seconds)
            except Exception:  # noqa: BLE001 - a listener must not die on one bad message (nor spin on one)
                log.exception("fleet %s: could not apply a message or resynchronise", self.desk)
                self._stop.wait(max(1.0, self._policy.retry_seconds))
        _closed(pubsub)

    def _apply(self, data: str) -> None:
        event = json.loads(data)
        if event.get("kind") == "breaker":
            name, gen = str(event["name"]), int(event["gen"])
            if gen <= self._gens.get(name, 0) or name not in self._core.breaker_names():
                return
            self._gens[name] = gen
            self._adopt(self._core.breaker(name), int(event["state"]), int(event["left"]), str(event["reason"]))
        elif event.get("kind") == "exposure":  # what a reset would count for that host
            host = str(event["host"])
            self._members[host] = (float(event["total"]), self._members.get(host, (0.0, 0))[1])
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
            desk: list[str | None] = self._client.hmget(self._desk_key, ["trading", "reason", "trading_gen"])
            risk = self._core.risk
            fleet_gen = int(desk[2] or 0)
            offline = self._offline_trading  # forgotten once given (an error here keeps it for the next resync)
            self._gens["\0trading"] = fleet_gen
            if offline is not None and (
                offline[0] in (TradingState.HALTED, TradingState.FLATTENING) or fleet_gen == offline[2]
            ):  # a trip made here always stands; another change only if nobody changed it meanwhile
                state, why = offline[0], offline[1]
                gen = self._run("SET_TRADING", [self._desk_key, self._channel], [int(state), why])
                self._gens["\0trading"] = int(gen)
                self._adopt_trading(state, why)
                log.warning(
                    "fleet %s: kept the trading state %s set here during the outage (%s)", self.desk, state.name, why
                )
            elif desk[0] is not None:
                if offline is not None:
                    log.warning(
                        "fleet %s: trading state %s set here during the outage is dropped: the desk's changed meanwhile",
                        self.desk,
                        offline[0].name,
                    )
                self._adopt_trading(TradingState(int(desk[0])), desk[1] or "")
            elif risk.trading_state is not TradingState.ACTIVE:
                gen = self._run(
                    "SET_TRADING", [self._desk_key, self._channel], [int(risk.trading_state), risk.state_reason]
                )
                self._gens["\0trading"] = int(gen)
            with self._offline_lock:
                if self._offline_trading is offline:
                    self._offline_trading = None
            self._register()

    def _lost(self, exc: BaseException) -> None:
        with self._state_lock:
            if not self._connected or self._stop.is_set():
                return
            log.warning("fleet %s unreachable: %s", self.desk, exc)
            for name in self._core.breaker_names():  # first: once it says unreachable, the policy holds
                self._apply_policy(self._core.breaker(name))
            self._connected = False
        notify(self._core.plugins, "bot4_fleet_changed", core=self._core, connected=False, reason=f"unreachable: {exc}")

    def _apply_policy(self, breaker: CircuitBreaker) -> None:
        if not self._policy.fails_closed(breaker.name):
            return
        self._forced.add(breaker.name)
        self._adopt(breaker, int(BreakerState.FORCED_OPEN), 0, FORCED_BY_POLICY)

    def _set_connected(self, connected: bool, reason: str) -> None:
        self._connected = connected
        log.info("fleet %s: %s", self.desk, reason)
        notify(self._core.plugins, "bot4_fleet_changed", core=self._core, connected=connected, reason=reason)


def _closed(pubsub: Any) -> None:
    """Close a pub/sub connection that may be broken (or None)."""
    if pubsub is not None:
        try:
            pubsub.close()
        except Exception:  # noqa: BLE001 - a broken connection may fail to close
            pass
