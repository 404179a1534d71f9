"""The workbench's page: ``index.html`` with the session's CSRF token, and its style sheet and
ES modules from ``static/`` (a whitelist; served as written, no build step)."""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

from lvseg.dashboard.pages import STATIC_DIR as DASHBOARD_STATIC
from lvseg.dashboard.pages import module_with_token, page_with_token
from lvseg.dashboard.responses import error_response
from lvseg.workbench.guard import Sessions

STATIC_DIR = Path(__file__).resolve().with_name("static")
_JAVASCRIPT = "text/javascript; charset=utf-8"  # a module runs only with a JavaScript type
STATIC_FILES = {
    "base.css": "text/css; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    **{path.name: _JAVASCRIPT for path in sorted(STATIC_DIR.glob("*.js"))},
}
"""The only files ``GET /static/{name}`` serves, so no request can name another file."""
_FOLDER = {"base.css": DASHBOARD_STATIC}
"""Where a file comes from when it is not the workbench's own: the look it shares with the
dashboard is the dashboard's one style sheet."""
CSRF_PLACEHOLDER = "{{csrf}}"


def page_routes(sessions: Sessions, cookie: str, token: str | None) -> APIRouter:
    """``GET /`` (a new session: its cookie, and its CSRF token in the page's
    ``<meta name="csrf-token">``) and ``GET /static/{name}``."""
    router = APIRouter()

    @router.get("/")
    def index() -> Response:
        session, csrf = sessions.new()
        page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
        page = page.replace(CSRF_PLACEHOLDER, html.escape(csrf))
        page = page_with_token(page, token)
        response = Response(page, media_type="text/html; charset=utf-8")
        response.headers["cache-control"] = "no-store"
        response.set_cookie(cookie, session, httponly=True, samesite="strict", path="/")
        return response

    @router.get("/static/{name}")
    def static(name: str) -> Response:
        media_type = STATIC_FILES.get(name)
        if media_type is None:
            return error_response(404, f"no static file {name!r}")
        headers = {"cache-control": "no-cache"}
        if token is not None and media_type == _JAVASCRIPT:
            text = (STATIC_DIR / name).read_text(encoding="utf-8")
            text = module_with_token(text, token)
            return Response(text, media_type=media_type, headers=headers)
        folder = _FOLDER.get(name, STATIC_DIR)
        return FileResponse(folder / name, media_type=media_type, headers=headers)

    return router
