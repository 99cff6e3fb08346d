"""The fleet's Redis client from a URL: one server, or the master a Redis Sentinel names.

``redis://host:port/db`` (and redis-py's other URL forms) reach one server.
``redis+sentinel://host:port[,host:port...]/service[/db]`` asks the sentinels at those
addresses for the master of ``service`` and follows it through failovers: a connection
lost when the master fails is made again to the master the sentinels promote.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from bot4.errors import ConfigError

__all__ = ["SENTINEL_SCHEME", "make_client"]

SENTINEL_SCHEME = "redis+sentinel"


def make_client(url: str, *, timeout: float) -> Any:
    """A redis-py client for ``url`` (see the module), decoding replies, with ``timeout``
    seconds for connecting and for every command.

    Raises:
        ConfigError: ``url`` is not a Redis or Sentinel URL.
    """
    import redis
    from redis.sentinel import Sentinel

    if not isinstance(url, str):
        raise ConfigError("url", f"expected a Redis URL, got {url!r}")
    options = {"socket_timeout": timeout, "socket_connect_timeout": timeout, "decode_responses": True}
    if not url.startswith(SENTINEL_SCHEME + "://"):
        try:
            return redis.Redis.from_url(url, **options)
        except ValueError as exc:
            raise ConfigError("url", f"not a Redis URL: {exc}") from None
    parts = urlsplit(url)
    path = [p for p in parts.path.split("/") if p]
    try:
        sentinels = [(host, int(port)) for host, _, port in (a.rpartition(":") for a in parts.netloc.split(","))]
        db = int(path[1]) if len(path) > 1 else 0
    except ValueError:
        sentinels, db = [], -1
    if not sentinels or any(not host for host, _ in sentinels) or not path or len(path) > 2 or db < 0:
        raise ConfigError("url", f"expected {SENTINEL_SCHEME}://host:port[,host:port...]/service[/db], got {url!r}")
    kwargs = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    sentinel = Sentinel(sentinels, sentinel_kwargs=kwargs)  # type: ignore[no-untyped-call]
    return sentinel.master_for(path[0], db=db, **options)  # type: ignore[no-untyped-call]
