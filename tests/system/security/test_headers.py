"""Security headers on every answer (web/headers.py): a Content-Security-Policy that allows only the master's own
scripts and styles, no framing (frame-ancestors 'none', X-Frame-Options: DENY), nosniff, same-origin referrers —
and pages that work under that policy: no inline script, event handler or style attribute in what they render."""

from __future__ import annotations

import re
import warnings
from html.parser import HTMLParser

from tests.support.masters import ADMIN, ADMIN_PASSWORD
from tests.system.auth.conftest import anonymous, session


def html_routes() -> list[str]:
    """Every page and fragment of the dashboard without path parameters, as routed — also those added later."""
    from pifleet.app import create_app

    with warnings.catch_warnings():  # Litestar's notices about 3.0 (the master logs them; not our business here)
        warnings.simplefilter("ignore", DeprecationWarning)
        app = create_app(None, auth=object())  # services are looked up per request: building the app touches none
    paths = {r.path for r in app.routes if "GET" in getattr(r, "methods", ()) and "{" not in r.path}
    skip = ("/api/", "/schema", "/static/", "/metrics", "/login", "/setup", "/logout")
    return sorted(p for p in paths if not any(p == s.rstrip("/") or p.startswith(s) for s in skip))


def directives(policy: str) -> dict[str, list[str]]:
    out = {}
    for part in policy.split(";"):
        name, *values = part.split()
        out[name] = values
    return out


def assert_secured(response, strict: bool = True) -> None:
    h = response.headers
    assert h["x-frame-options"] == "DENY", (response.url, dict(h))
    assert h["x-content-type-options"] == "nosniff"
    assert h["referrer-policy"] == "same-origin"
    csp = directives(h["content-security-policy"])
    assert csp["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in csp["script-src"] and "'unsafe-eval'" not in csp["script-src"]
    if strict:
        assert csp["default-src"] == ["'self'"] and csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"]


class InlineCode(HTMLParser):
    """What a strict policy would block in a page: inline <script>/<style>, on* handlers, style attributes,
    javascript: URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and not attrs.get("src") and attrs.get("type") not in ("application/json",):
            self.found.append(f"inline <script> {attrs}")
        if tag == "style":
            self.found.append("<style> element")
        for name, value in attrs.items():
            if name.startswith("on") or name.startswith("hx-on"):
                self.found.append(f"<{tag} {name}=…>")
            if name == "style":
                self.found.append(f"<{tag} style={value!r}>")
            if (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}={value!r}>")


def inline_code(html: str) -> list[str]:
    parser = InlineCode()
    parser.feed(html)
    return parser.found


def test_every_answer_carries_the_headers(module_master):
    person = session(module_master)
    pages = html_routes()
    assert {"/", "/settings", "/ui/devices"} <= set(pages), pages
    for path in pages:
        r = person.get(path)
        assert r.status_code == 200, (path, r.status_code)
        assert r.headers["content-type"].startswith("text/html"), path
        assert_secured(r)
        assert inline_code(r.text) == [], (path, inline_code(r.text))
    nobody = anonymous(module_master)
    r = nobody.get("/login")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert_secured(r)
    assert inline_code(r.text) == [], inline_code(r.text)
    assert_secured(nobody.get("/setup"))  # once set up, it sends the browser to the login page
    # a redirect to the login page, an API answer, a static file, a 404, a refused login: the same headers
    assert_secured(nobody.get("/", headers={"accept": "text/html"}))
    assert_secured(nobody.get("/api/devices"))
    assert_secured(person.get("/api/devices"))
    assert_secured(nobody.get("/static/pifleet.css"))
    assert_secured(person.get("/no/such/page"))
    assert_secured(nobody.post("/api/login", json={"name": ADMIN, "password": ADMIN_PASSWORD + "x"}))


def test_the_api_reference_is_served_by_the_master_alone_and_never_framed(module_master):
    """/schema (Redoc, vendored: web/schema.py) references only the master's own URLs, which it serves; nothing
    from a CDN, no inline script."""
    person = session(module_master)
    r = person.get("/schema")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert_secured(r, strict=False)
    csp = directives(r.headers["content-security-policy"])
    assert csp["script-src"] == ["'self'"] and csp["connect-src"] == ["'self'"]
    assert [s for s in inline_code(r.text) if "inline <script>" in s] == []
    urls = [u for u in re.findall(r"""(?:src|href|data-spec-url)=["']([^"']+)""", r.text) if not u.startswith("data:")]
    assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    for url in urls:
        assert person.get(url).status_code == 200, url
    bundle = person.get("/static/vendor/redoc-2.5.0.standalone.js")  # the whole of Redoc, from the master
    assert "javascript" in bundle.headers["content-type"] and len(bundle.content) > 500_000
