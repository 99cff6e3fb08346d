"""Control requests a hostile local client can send: refused with the right status, nothing changed, never a 500."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from bot4 import Core
from tests.dashboard.conftest import Served

pytestmark = pytest.mark.processes


def _raw(served: Served, data: bytes) -> bytes:
    host, port = served.host.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def _post(served: Served, body: bytes, auth: bytes, action: str = "kill") -> bytes:
    return _raw(
        served,
        b"POST /api/control/%s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAuthorization: %s\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n"
        % (action.encode(), served.host.encode(), auth, len(body))
        + body,
    )


def test_operator_and_reason_refuse_every_control_character(desk: Core, serve: Callable[..., Served]) -> None:
    """A newline or an ANSI escape would forge lines in the server's log, the kill switch's
    reason and the journal: refused (422)."""
    served = serve(desk.name)
    for operator, reason in (("alice\nbot4 serve: control: forged", "incident"), ("alice", "x\x1b[2Jcleared")):
        status, answer = served.control("kill", {"operator": operator, "reason": reason})
        assert status == 422, (operator, reason, answer)
        assert not desk.risk.kill_switch.active


def test_a_non_utf8_authorization_header_is_401_not_500(desk: Core, serve: Callable[..., Served]) -> None:
    """A Latin-1 byte in the token (aiohttp decodes it to a surrogate) is a wrong token: 401, not a 500."""
    served = serve(desk.name)
    answer = _post(served, b'{"operator": "a", "reason": "b"}', b"Bearer \xe9t\xe9")
    assert answer.split(b"\r\n", 1)[0].split()[1] == b"401", answer[:200]
    assert not desk.risk.kill_switch.active


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"[" * 5000, b"400"),  # nested past the JSON decoder's recursion limit
        (b'{"operator": "a", "reason": "b", "limits": {"max_open_orders": 1' + b"0" * 400 + b"}}", b"422"),
    ],
    ids=["deeply-nested", "int-past-float-range"],
)
def test_malformed_control_bodies_are_refused_not_500(
    desk: Core, serve: Callable[..., Served], body: bytes, status: bytes
) -> None:
    served = serve(desk.name)
    token = served.token
    assert token is not None
    action = "limits" if b"limits" in body else "kill"
    answer = _post(served, body, b"Bearer " + token.encode(), action)
    assert answer.split(b"\r\n", 1)[0].split()[1] == status, answer[:300]
    assert desk.risk.limits.max_open_orders == 50


def test_every_answer_carries_the_security_headers(desk: Core, serve: Callable[..., Served]) -> None:
    """docs/dashboard.md: "Every answer carries Content-Security-Policy ... X-Content-Type-Options",
    the router's own 404/405 answers included."""
    served = serve(desk.name, control=False)
    for method, path in (("GET", "/no-such-page"), ("PUT", "/api/state")):
        status, headers, _ = served.request(method, path)
        assert status in (404, 405)
        assert headers.get("X-Content-Type-Options") == "nosniff", (method, path, headers)
        assert "Content-Security-Policy" in headers, (method, path, headers)
