"""What a host does while it cannot reach the fleet's Redis."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from bot4.errors import ConfigError

__all__ = ["FleetPolicy"]

Mode = Literal["open", "closed"]
_MODES = ("open", "closed")


@dataclass(frozen=True, kw_only=True)
class FleetPolicy:
    """Per-breaker behaviour while Redis is unreachable; risk always fails closed.

    ``"closed"`` (fail-closed): the breaker rejects every call on this host until the fleet
    is back and its state is read again. ``"open"`` (fail-open): the breaker keeps working
    on this host's own state (shared by the host's processes, not with other hosts). While
    Redis is unreachable every risk reservation is refused (``FLEET_UNAVAILABLE``).

    Args:
        breakers: the mode of every breaker not named in ``overrides``.
        overrides: breaker name -> mode.
        socket_timeout: seconds a Redis command may take before the fleet counts as unreachable.
        retry_seconds: how often an unreachable Redis is tried again.
        health_seconds: how often each connection is checked while nothing else is heard:
            the command connection renews this host's lease, the pub/sub connection is
            pinged. A Redis that stalls, drops packets or half-closes a connection is
            detected within ``2 * health_seconds + socket_timeout`` (1.25 s by default).
        replicas: how many replicas must acknowledge each approved reservation (Redis
            ``WAIT``, within ``socket_timeout``) for it to stand; fewer, and it is refused
            (``FLEET_UNAVAILABLE``) and undone, so a failover to a replica never loses one.
            0 (the default) for a Redis without replicas.
        lease_seconds: how long this host's membership lasts without a renewal. After
            Redis loses the fleet's exposure state, reservations wait for every host whose
            lease is live to register again (a host that never does is counted at its last
            known exposure once its lease ends).
    """

    breakers: Mode = "closed"
    overrides: Mapping[str, Mode] = field(default_factory=dict)
    socket_timeout: float = 0.25
    retry_seconds: float = 0.1
    health_seconds: float = 0.5
    lease_seconds: float = 5.0
    replicas: int = 0

    def __post_init__(self) -> None:
        if self.breakers not in _MODES:
            raise ConfigError("breakers", f"must be 'open' or 'closed', got {self.breakers!r}")
        for name, mode in dict(self.overrides).items():
            if mode not in _MODES:
                raise ConfigError("overrides", f"breaker {name!r}: must be 'open' or 'closed', got {mode!r}")
        for name in ("socket_timeout", "retry_seconds", "health_seconds", "lease_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 60:
                raise ConfigError(name, f"must be a number of seconds in (0, 60], got {value!r}")
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) or not 0 <= self.replicas <= 16:
            raise ConfigError("replicas", f"must be an integer in [0, 16], got {self.replicas!r}")
        if self.lease_seconds < 4 * self.health_seconds + 2 * self.socket_timeout:
            raise ConfigError(
                "lease_seconds",
                "must be at least 4 x health_seconds + 2 x socket_timeout "
                f"({4 * self.health_seconds + 2 * self.socket_timeout}s), got {self.lease_seconds}",
            )

    def fails_closed(self, breaker: str) -> bool:
        """Whether ``breaker`` rejects calls while the fleet is unreachable."""
        return self.overrides.get(breaker, self.breakers) == "closed"
