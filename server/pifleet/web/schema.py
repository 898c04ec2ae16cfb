"""The API reference at /schema: Litestar's Redoc render plugin, with Redoc served by the master itself.

Layer: web adapter. Litestar's plugins load their bundle, stylesheet, favicon and fonts from CDNs, and Redoc's
page starts it with an inline script; a master on a home network without Internet would show an empty page, and
the dashboard's Content-Security-Policy allows neither. Here the bundle is dashboard/static/vendor/ (Redoc 2.5.0,
redoc.standalone.js, MIT: LICENSE.redoc beside it) and /static/schema.js starts it on the page's element, which
names the schema's URL: no request leaves the Pi, and no script is inline. Redoc's search runs in a web worker
made from a blob, which the policy does not allow: it is off (the headings are in the side menu). The one thing
Redoc still asks for elsewhere, the small "Redocly" logo under its menu, is blocked by the page's policy: the
browser never requests it.
"""

from __future__ import annotations

import html
from typing import Any

from litestar import Request
from litestar.openapi.plugins import RedocRenderPlugin

REDOC_JS = "/static/vendor/redoc-2.5.0.standalone.js"
START_JS = "/static/schema.js"


class LocalRedoc(RedocRenderPlugin):
    def __init__(self) -> None:
        super().__init__(js_url=REDOC_JS, google_fonts=False, favicon="", path="/redoc")

    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
        title = html.escape(openapi_schema["info"]["title"])
        spec = html.escape(self.get_openapi_json_route(request), quote=True)
        return f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title}</title>
  <link rel="icon" href="data:,">
  <script src="{REDOC_JS}" defer></script>
  <script src="{START_JS}" defer></script>
</head>
<body>
  <noscript>The API reference needs JavaScript; the schema itself is <a href="{spec}">{spec}</a>.</noscript>
  <div id="redoc-container" data-spec-url="{spec}"></div>
</body>
</html>
""".encode()
