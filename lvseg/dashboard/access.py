"""Who may read the dashboard: the access token, the Host check, and the guard on every request.

Safe by default. Without a token the dashboard answers only requests addressed to a loopback
name (no DNS rebinding; a malformed Host header is refused too). With a token, every request
carries it as ``?token=`` or ``Authorization: Bearer``.
"""

from __future__ import annotations

import ipaddress
import secrets
from typing import Any
from urllib.parse import parse_qs

from lvseg.dashboard.readers import encode
from lvseg.errors import InvalidInputError

MIN_TOKEN_LENGTH = 16
"""The shortest access token accepted; generated tokens (``secrets.token_urlsafe(18)``) have 24."""
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors {ancestors}"
)


def check_token(token: str | None) -> str | None:
    """``token`` if it is a usable access token (None: no token), else InvalidInputError.

    A token is at least :data:`MIN_TOKEN_LENGTH` printable ASCII characters, none of them a space:
    it travels in URLs and ``Authorization`` headers, and an empty one must never read as "no
    authentication".
    """
    if token is None:
        return None
    if len(token) < MIN_TOKEN_LENGTH:
        raise InvalidInputError(
            None,
            f"dashboard token too short ({len(token)} characters): use at least "
            f"{MIN_TOKEN_LENGTH}, or leave --token out to have one generated",
        )
    if not all("!" <= character <= "~" for character in token):
        raise InvalidInputError(
            None,
            "dashboard token has a space, control or non-ASCII character: use printable ASCII "
            "only, or leave --token out to have one generated",
        )
    return token


def _host_name(host: str) -> str | None:
    """The name in a Host header (``name``, ``name:port``, ``[v6]:port``); None if malformed."""
    if host.startswith("["):
        name, bracket, port = host[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            return None
        port = port[1:]
    else:
        name, _, port = host.partition(":")
    if port and not (port.isascii() and port.isdigit()):
        return None
    if not name or any(c in name for c in "/?#@\\[] ") or not name.isprintable():
        return None
    return name


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine only."""
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Guard:
    """ASGI middleware: the token (or, without one, a loopback Host header) on every request,
    and headers that keep the page from loading anything that is not from this server.
    ``frame_ancestors`` (CSP) says who may show its pages in a frame: nobody by default; the
    workbench, which shows the dashboard in an iframe, gives ``'self'``."""

    def __init__(self, app: Any, token: str | None, *, frame_ancestors: str = "'none'") -> None:
        self.app = app
        self.token = token
        self.policy = _CONTENT_SECURITY_POLICY.format(ancestors=frame_ancestors).encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            status, message = refusal
            # "/api/" anywhere: the dashboard's API is also served under a prefix (/monitor/api/)
            api = "/api/" in scope.get("path", "")
            body = encode({"error": message}).encode() if api else message.encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json" if api else b"text/plain"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"content-security-policy", self.policy),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope: dict) -> tuple[int, str] | None:
        headers = {key.lower(): value for key, value in scope.get("headers", [])}
        if self.token is None:
            host = headers.get(b"host", b"").decode("latin-1")
            name = _host_name(host)
            if name is None or not is_loopback(name):
                return 403, f"host {host!r} refused: this dashboard answers on localhost only"
            return None
        given = None
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        if authorization.lower().startswith("bearer "):
            given = authorization[7:].strip()
        else:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = (query.get("token") or [None])[0]
        if not given:
            return 401, "this dashboard needs its token: open the URL that lvseg dashboard printed"
        if not secrets.compare_digest(given.encode(), self.token.encode()):
            return 403, "wrong dashboard token"
        return None
