"""Who may change the workbench: the token, or a same-origin session with its CSRF token.

Inside the dashboard's :class:`~lvseg.dashboard.access.Guard` (loopback Host, or the token on
every request), :class:`SessionGuard` checks every request that is not a GET or HEAD: it must
carry the token as ``Authorization: Bearer``, or the session cookie that ``GET /`` set together
with that session's CSRF token in ``X-CSRF-Token`` and an ``Origin`` (or ``Referer``) of this
very server. A request whose Origin is another site's is refused whatever it carries.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from typing import Any

from lvseg.dashboard.readers import encode

SESSION_COOKIE_PREFIX = "lvseg_workbench_session"
CSRF_HEADER = "x-csrf-token"
MAX_SESSIONS = 256
SAFE_METHODS = frozenset({"GET", "HEAD"})


def session_cookie(port: int | None) -> str:
    """The session cookie's name for a server on ``port``. A browser keeps one cookie jar per
    host, whatever the port: two workbenches on one machine must not overwrite each other's."""
    return SESSION_COOKIE_PREFIX if port is None else f"{SESSION_COOKIE_PREFIX}_{port}"


class Sessions:
    """The server's sessions: session id -> CSRF token, in memory (a restart asks the page to
    load again). The oldest are forgotten past :data:`MAX_SESSIONS`, so no client can grow it."""

    def __init__(self) -> None:
        self._csrf: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def new(self) -> tuple[str, str]:
        """A new session: its id (the cookie) and its CSRF token (for the page's header)."""
        session, csrf = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        with self._lock:
            self._csrf[session] = csrf
            while len(self._csrf) > MAX_SESSIONS:
                self._csrf.popitem(last=False)
        return session, csrf

    def csrf_ok(self, session: str | None, csrf: str | None) -> bool:
        """Whether ``csrf`` is the CSRF token of the live session ``session``."""
        if not session or not csrf:
            return False
        with self._lock:
            expected = self._csrf.get(session)
        return expected is not None and secrets.compare_digest(csrf.encode(), expected.encode())


class SessionGuard:
    """ASGI middleware: the rules of the module on every request."""

    def __init__(
        self, app: Any, token: str | None, sessions: Sessions, cookie: str = SESSION_COOKIE_PREFIX
    ) -> None:
        self.app = app
        self.token = token
        self.sessions = sessions
        self.cookie = cookie  # the session cookie's name (session_cookie)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            refusal = refusal_of(scope, self.token, self.sessions, self.cookie)
            if refusal is not None:
                await _refuse(send, *refusal)
                return
        await self.app(scope, receive, send)


def refusal_of(
    scope: dict, token: str | None, sessions: Sessions, cookie: str = SESSION_COOKIE_PREFIX
) -> tuple[int, str] | None:
    """Why the request in ``scope`` is refused (status, message), or None if it may go on;
    ``cookie`` names the session cookie."""
    headers = _headers(scope)
    origin = headers.get("origin")
    own = _own_origin(scope, headers)
    # Any method: a page of another site learns nothing and changes nothing here.
    if origin is not None and origin.lower() != own.lower():
        return 403, f"origin {origin!r} refused: the workbench answers its own page only"
    if scope.get("method", "GET") in SAFE_METHODS:
        return None
    if headers.get("content-type", "").lower().startswith("multipart/"):
        return 415, "uploads are not accepted"
    if token is not None and _bearer(headers) is not None:
        if secrets.compare_digest(_bearer(headers).encode(), token.encode()):
            return None
        return 403, "wrong workbench token"
    if not sessions.csrf_ok(_cookie(headers, cookie), headers.get(CSRF_HEADER)):
        return 403, "a change needs the token, or the page's session and its CSRF token"
    if origin is None and not _same_origin_referer(headers.get("referer"), own):
        return 403, "a change needs an Origin or Referer header of this server"
    return None


def _headers(scope: dict) -> dict[str, str]:
    # Last one wins, as the ASGI list may repeat a name; values as Latin-1 (HTTP's bytes).
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _own_origin(scope: dict, headers: dict[str, str]) -> str:
    return f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"


def _same_origin_referer(referer: str | None, own: str) -> bool:
    if not referer:
        return False
    referer = referer.lower()
    return referer == own.lower() or referer.startswith(own.lower() + "/")


def _bearer(headers: dict[str, str]) -> str | None:
    authorization = headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def _cookie(headers: dict[str, str], name: str) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


async def _refuse(send: Any, status: int, message: str) -> None:
    body = encode({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
