"""The dashboard's login: the /login and /setup forms, logging out, and the admins' panel of users and API tokens.

Plain HTML forms (they work without JavaScript); the panel's forms go through htmx, which sends the CSRF token
from the page's hx-headers. Errors come back as the form again with a message, never as a problem document.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Template

from ...auth.errors import TooManyAttemptsError
from ...auth.model import Principal
from ...auth.service import AuthService
from ...errors import PifleetError
from ..api.auth import COOKIE, admin_only, cleared_cookie, peer, session_cookie

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]


def _next(value: str | None) -> str:
    """Where to go after login: a path on this site only (no open redirect to //evil.example or /\\evil)."""
    if value and value.startswith("/") and not value.startswith(("//", "/\\")) and "\n" not in value:
        return value
    return "/"


def _form(template: str, status: int, headers: dict[str, str] | None = None, **context) -> Template:
    return Template(template, context=context, status_code=status, headers=headers)


def _message(exc: PifleetError) -> str:
    return exc.detail


class LoginPageController(Controller):
    path = "/"
    include_in_schema = False

    @get("/login", operation_id="loginPage")
    async def login_page(self, request: Request, auth: AuthService, next: str | None = None) -> Template | Redirect:
        if (session_id := request.cookies.get(COOKIE)) and await auth.session(session_id):
            return Redirect(_next(next), status_code=303)
        if await auth.needs_setup():
            return Redirect("/setup", status_code=303)
        return _form("login.html", 200, next=_next(next), name="", error=None)

    @post("/login", operation_id="loginForm", status_code=303)
    async def login_form(self, request: Request, auth: AuthService, data: Form) -> Template | Redirect:
        name, target = data.get("name", ""), _next(data.get("next"))
        try:
            session_id, _ = await auth.login(name, data.get("password", ""), peer(request), request.cookies.get(COOKIE))
        except TooManyAttemptsError as exc:
            return _form(
                "login.html", 429, {"Retry-After": str(exc.retry_after)}, next=target, name=name, error=_message(exc)
            )
        except PifleetError as exc:
            return _form("login.html", exc.status, next=target, name=name, error=_message(exc))
        return Redirect(target, status_code=303, cookies=[session_cookie(request, session_id, auth.lifetime)])

    @get("/setup", operation_id="setupPage")
    async def setup_page(self, auth: AuthService) -> Template | Redirect:
        if not await auth.needs_setup():
            return Redirect("/login", status_code=303)
        return _form("setup.html", 200, name="", error=None)

    @post("/setup", operation_id="setupForm", status_code=303)
    async def setup_form(self, request: Request, auth: AuthService, data: Form) -> Template | Redirect:
        name, password = data.get("name", ""), data.get("password", "")
        if password != data.get("password2", password):
            return _form("setup.html", 422, name=name, error="the two passwords differ")
        try:
            session_id, _ = await auth.setup(data.get("token", "").strip(), name, password, peer(request))
        except TooManyAttemptsError as exc:
            return _form("setup.html", 429, {"Retry-After": str(exc.retry_after)}, name=name, error=_message(exc))
        except PifleetError as exc:
            if exc.status == 409:
                return Redirect("/login", status_code=303)
            return _form("setup.html", exc.status, name=name, error=_message(exc))
        return Redirect("/", status_code=303, cookies=[session_cookie(request, session_id, auth.lifetime)])

    @post("/logout", operation_id="logoutForm", status_code=303)
    async def logout_form(self, request: Request, auth: AuthService, principal: Principal) -> Redirect:
        if principal.via == "session":
            await auth.logout(request.cookies.get(COOKIE, ""), principal)
        return Redirect("/login", status_code=303, cookies=[cleared_cookie(request)])


async def _panel(
    auth: AuthService, message: str | None = None, error: bool = False, secret: str | None = None
) -> Template:
    return Template(
        "_auth.html",
        context={
            "users": await auth.list_users(),
            "tokens": await auth.list_tokens(),
            "message": message,
            "error": error,
            "secret": secret,
        },
    )


class AuthPanelController(Controller):
    """Admins only: people and API tokens. A new token's secret is in the answer to its creation, once."""

    path = "/ui/auth"
    include_in_schema = False
    guards = [admin_only]

    @get("/", operation_id="uiAuth")
    async def panel(self, auth: AuthService) -> Template:
        return await _panel(auth)

    @post("/users", operation_id="uiCreateUser", status_code=200)
    async def create_user(self, auth: AuthService, principal: Principal, data: Form) -> Template:
        role = data.get("role", "viewer")
        try:
            if role not in ("admin", "viewer"):
                raise PifleetError("a role is admin or viewer", field="role")
            user = await auth.create_user(data.get("name", ""), data.get("password", ""), role, principal)
        except PifleetError as exc:
            return await _panel(auth, _message(exc), error=True)
        return await _panel(auth, f"user {user.name} ({user.role}) added")

    @post("/users/{name:str}/delete", operation_id="uiDeleteUser", status_code=200)
    async def delete_user(self, auth: AuthService, principal: Principal, name: str) -> Template:
        try:
            await auth.delete_user(name, principal)
        except PifleetError as exc:
            return await _panel(auth, _message(exc), error=True)
        return await _panel(auth, f"user {name} removed, with their sessions and API tokens")

    @post("/tokens", operation_id="uiCreateToken", status_code=200)
    async def create_token(self, auth: AuthService, principal: Principal, data: Form) -> Template:
        scope = data.get("scope", "read")
        try:
            if scope not in ("read", "write"):
                raise PifleetError("a scope is read or write", field="scope")
            token = await auth.create_token(data.get("name", ""), scope, principal)
        except PifleetError as exc:
            return await _panel(auth, _message(exc), error=True)
        return await _panel(
            auth,
            f"API token {token.id} ({token.name}, {token.scope}) created; copy it now, it is not shown again",
            secret=token.secret,
        )

    @post("/tokens/{token_id:int}/revoke", operation_id="uiRevokeToken", status_code=200)
    async def revoke_token(self, auth: AuthService, principal: Principal, token_id: int) -> Template:
        try:
            await auth.revoke_token(token_id, principal)
        except PifleetError as exc:
            return await _panel(auth, _message(exc), error=True)
        return await _panel(auth, f"API token {token_id} revoked")


CONTROLLERS = [LoginPageController, AuthPanelController]
