"""Security headers on every answer of the master (a `before_send` hook of the app, so 404s, redirects and error
pages carry them too, not only routed handlers).

Pages that hold buttons which move motors must not run anyone else's code and must not be framed by another site
(a framed control can be clicked through a decoy: clickjacking). So every answer says:
- Content-Security-Policy: scripts, styles, images, fonts and connections from the master itself only; no inline
  script or style, no eval (the dashboard's code is in /static; htmx runs with allowEval off); `frame-ancestors
  'none'`, `form-action 'self'`, `base-uri 'none'`, `object-src 'none'`;
- X-Frame-Options: DENY (frame-ancestors for browsers that predate it);
- X-Content-Type-Options: nosniff (a file is only ever what its Content-Type says);
- Referrer-Policy: same-origin (a link out does not tell the other site which board page it came from).

The one exception is the API reference at /schema (Redoc, vendored: web/schema.py): its scripts are the master's
too, but Redoc styles its page with <style> elements it adds, so that page's policy allows inline styles (still no
inline script, nothing from elsewhere, never framed).

Layer: web adapter; no service, no I/O.
"""

from __future__ import annotations

from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# The API reference (Redoc, from /static: web/schema.py) adds its own <style> elements and data: images
SCHEMA_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
FIXED = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def policy(path: str) -> str:
    """The Content-Security-Policy of an answer to `path`."""
    return SCHEMA_CSP if path == "/schema" or path.startswith("/schema/") else CSP


async def security_headers(message: Message, scope: Scope) -> None:
    """`before_send` hook: add the headers to the start of every HTTP answer (a handler's own value wins)."""
    if message["type"] != "http.response.start":
        return
    headers = MutableScopeHeaders.from_message(message)
    if "content-security-policy" not in headers:
        headers["Content-Security-Policy"] = policy(scope.get("path", ""))
    for name, value in FIXED.items():
        if name not in headers:
            headers[name] = value
