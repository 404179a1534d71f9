"""The page: ``index.html``, its style sheet and ES modules from ``static/``, and the Plotly
bundled in the installed ``plotly`` package. Nothing else is served from disk, and the modules
are served as they are written (no build step)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

from lvseg.dashboard.responses import error_response
from lvseg.errors import InvalidInputError

STATIC_DIR = Path(__file__).resolve().with_name("static")
_JAVASCRIPT = "text/javascript; charset=utf-8"
"""Browsers run a module script only when it comes with a JavaScript MIME type."""
STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "base.css": "text/css; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    **{path.name: _JAVASCRIPT for path in sorted(STATIC_DIR.glob("*.js"))},
}
"""The only files served from ``static/`` (a whitelist, so no request can name another file)."""
PLOTLY_JS = "plotly.min.js"
_STATIC_REFERENCE = re.compile(r'((?:src|href)="static/[^"?#]+)"')
_MODULE_IMPORT = re.compile(r"(\bfrom '\./[\w-]+\.js)'")


def _plotly_js() -> Path:
    """plotly.min.js of the installed ``plotly`` package (found without importing plotly)."""
    spec = importlib.util.find_spec("plotly")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "package_data" / PLOTLY_JS
        if path.is_file():
            return path
    # Answered as any unreadable input: 422 with this message.
    raise InvalidInputError(None, "plotly.min.js not found: is the plotly package installed?")


def _token_suffix(token: str) -> str:
    return f"?token={quote(token, safe='')}"


def page_with_token(html: str, token: str | None) -> str:
    """A page whose own scripts and style sheets (``src``/``href="static/..."``) carry the token:
    with a token the Guard wants it on every request."""
    if token is None:
        return html
    suffix = _token_suffix(token)
    return _STATIC_REFERENCE.sub(lambda m: f'{m.group(1)}{suffix}"', html)


def module_with_token(text: str, token: str | None) -> str:
    """A module whose ``from './x.js'`` imports carry the token: a browser resolves a relative
    import against the module's URL less its query, so the token would not reach them. The
    same suffix everywhere keeps one URL, so one instance, per module."""
    if token is None:
        return text
    suffix = _token_suffix(token)
    return _MODULE_IMPORT.sub(lambda m: f"{m.group(1)}{suffix}'", text)


def page_routes(token: str | None) -> APIRouter:
    """``GET /`` (the page) and ``GET /static/{name}`` (its files and plotly.min.js)."""
    router = APIRouter()

    @router.get("/")
    def index() -> Response:
        return Response(
            page_with_token((STATIC_DIR / "index.html").read_text(encoding="utf-8"), token),
            media_type=STATIC_FILES["index.html"],
            headers={"cache-control": "no-store"},
        )

    @router.get("/static/{name}")
    def static(name: str) -> Response:
        if name == PLOTLY_JS:
            return FileResponse(
                _plotly_js(),
                media_type=_JAVASCRIPT,
                headers={"cache-control": "private, max-age=86400"},
            )
        if name not in STATIC_FILES or name == "index.html":
            return error_response(404, f"no static file {name!r}")
        media_type = STATIC_FILES[name]
        headers = {"cache-control": "no-cache"}
        if token is not None and media_type == _JAVASCRIPT:
            text = module_with_token((STATIC_DIR / name).read_text(encoding="utf-8"), token)
            return Response(text, media_type=media_type, headers=headers)
        return FileResponse(STATIC_DIR / name, media_type=media_type, headers=headers)

    return router
