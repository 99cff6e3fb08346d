"""The frame handler of a stream's connection over picows (imported on first connect).

picows hands over frames, not messages: a fragmented message (a first frame without
``fin``, then continuations) is put together here, up to a bound; a close frame is
answered and the connection ended; pings are answered by picows itself.
"""

from collections.abc import Callable
from typing import Any

from picows import WSFrame, WSListener, WSMsgType, WSTransport

__all__ = ["Listener"]

_TEXT, _BINARY, _CONTINUATION, _CLOSE = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION, WSMsgType.CLOSE


class Listener(WSListener):
    """Hands every whole message to ``deliver``; ``gone`` when the connection ends."""

    def __init__(self, deliver: Callable[[bytes], None], gone: Callable[[], None], max_size: int) -> None:
        super().__init__()
        self._deliver = deliver
        self._gone = gone
        self._max_size = max_size
        self._parts: list[bytes] | None = None
        self._size = 0

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is _TEXT or kind is _BINARY:
            if frame.fin and self._parts is None:
                self._deliver(frame.get_payload_as_bytes())
                return
            if self._parts is not None:  # a new message inside another: the peer broke the protocol
                transport.disconnect(graceful=False)
                return
            self._parts, self._size = [], 0
            self._add(transport, frame)
        elif kind is _CONTINUATION:
            if self._parts is None:
                transport.disconnect(graceful=False)
                return
            self._add(transport, frame)
        elif kind is _CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def _add(self, transport: WSTransport, frame: WSFrame) -> None:
        parts = self._parts
        assert parts is not None
        payload = frame.get_payload_as_bytes()
        self._size += len(payload)
        if self._size > self._max_size:  # bounded memory: a message this long ends the connection
            self._parts = None
            transport.disconnect(graceful=False)
            return
        parts.append(payload)
        if frame.fin:
            self._parts = None
            self._deliver(b"".join(parts))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._gone()


def connect(url: str, listener: Callable[[], Any], open_seconds: float, ping_seconds: float, max_size: int) -> Any:
    """picows's connect coroutine for ``url`` with the stream's settings."""
    from picows import ws_connect

    return ws_connect(
        listener,
        url,
        websocket_handshake_timeout=open_seconds,
        enable_auto_ping=True,
        auto_ping_idle_timeout=ping_seconds,
        auto_ping_reply_timeout=ping_seconds,
        max_frame_size=max_size,
        disconnect_on_exception=False,
    )
