"""JSON API of login: setup of the first admin, login/logout, who am I, users and API tokens (admins only).

Also the HTTP side of sessions shared with the login pages: the session cookie, the peer address, the admin
guard. Which routes need a login at all is decided once, for every route, by the guard in app.py.
"""

from __future__ import annotations

from datetime import timedelta

from litestar import Controller, Request, Response, delete, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie

from ...auth.errors import ForbiddenError, SetupDoneError, TooManyAttemptsError, UnauthenticatedError
from ...auth.model import (
    LoginRequest,
    Me,
    Principal,
    SetupRequest,
    TokenCreate,
    TokenCreated,
    TokenRead,
    UserCreate,
    UserRead,
)
from ...auth.service import AuthService
from ..contract import problems

COOKIE = "pifleet_session"


def peer(connection: ASGIConnection) -> str:
    """The client's address (uvicorn puts the X-Forwarded-For client here only for a proxy on loopback)."""
    return connection.client.host if connection.client else "unknown"


def is_https(connection: ASGIConnection) -> bool:
    """Over TLS, or behind a proxy that says so: then the cookie is Secure. (On plain http it cannot be: a
    browser would not send a Secure cookie back over http.)"""
    forwarded = connection.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return connection.scope.get("scheme") == "https" or forwarded == "https"


def session_cookie(connection: ASGIConnection, session_id: str, lifetime: timedelta) -> Cookie:
    return Cookie(
        key=COOKIE,
        value=session_id,
        path="/",
        max_age=int(lifetime.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=is_https(connection),
    )


def cleared_cookie(connection: ASGIConnection) -> Cookie:
    return Cookie(
        key=COOKIE, value="", path="/", max_age=0, httponly=True, samesite="strict", secure=is_https(connection)
    )


async def authenticate(connection: ASGIConnection, auth: AuthService) -> Principal:
    """Who sends this request: its API token (a script: the token alone counts, never a cookie beside it), else
    its session cookie; UnauthenticatedError when neither is valid (now: a long-lived stream asks again)."""
    header = connection.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        principal = await auth.token(value.strip(), peer(connection)) if scheme.lower() == "bearer" else None
        if principal is None:
            raise UnauthenticatedError("unknown, revoked or malformed API token", field="Authorization")
        return principal
    if (session_id := connection.cookies.get(COOKIE)) and (principal := await auth.session(session_id)):
        return principal
    raise UnauthenticatedError(
        "log in first (POST /api/login, or /login in a browser), or send an API token: Authorization: Bearer pft_…"
    )


def current_principal(request: Request) -> Principal:
    """Dependency `principal`: set by the guard in app.py on every route that is not public."""
    return request.state.principal


def admin_only(connection: ASGIConnection, _handler: object) -> None:
    """Guard of users and tokens: a person logged in as admin (an API token never administers credentials)."""
    principal = connection.state.get("principal")
    if principal is None or not principal.is_admin:
        raise ForbiddenError("only an admin, logged in with name and password, administers users and API tokens")


class AuthController(Controller):
    path = "/api"
    tags = ["auth"]

    @post(
        "/setup",
        operation_id="setup",
        status_code=201,
        opt=problems(SetupDoneError, TooManyAttemptsError),
        summary="Create the first admin with the one-time setup token from the master's console; logs in",
    )
    async def setup(self, request: Request, auth: AuthService, data: SetupRequest) -> Response[Me]:
        session_id, principal = await auth.setup(data.token, data.name, data.password, peer(request))
        return Response(Me.of(principal), status_code=201, cookies=[session_cookie(request, session_id, auth.lifetime)])

    @post(
        "/login",
        operation_id="login",
        status_code=200,
        opt=problems(UnauthenticatedError, TooManyAttemptsError),
        summary="Log in: sets the session cookie; answers the CSRF token that unsafe requests must send",
    )
    async def login(self, request: Request, auth: AuthService, data: LoginRequest) -> Response[Me]:
        session_id, principal = await auth.login(data.name, data.password, peer(request), request.cookies.get(COOKIE))
        return Response(Me.of(principal), cookies=[session_cookie(request, session_id, auth.lifetime)])

    @post("/logout", operation_id="logout", status_code=204, summary="Log out: the session ends")
    async def logout(self, request: Request, auth: AuthService, principal: Principal) -> Response[None]:
        if principal.via == "session":
            await auth.logout(request.cookies.get(COOKIE, ""), principal)
        return Response(None, status_code=204, cookies=[cleared_cookie(request)])

    @get("/me", operation_id="getMe", summary="Who this request acts as: a person (role) or an API token (scope)")
    async def me(self, principal: Principal) -> Me:
        return Me.of(principal)


class UserController(Controller):
    path = "/api/users"
    tags = ["auth"]
    guards = [admin_only]

    @get("/", operation_id="listUsers", summary="People who can log in, and their roles (admin)")
    async def list_users(self, auth: AuthService) -> list[UserRead]:
        return await auth.list_users()

    @post("/", operation_id="createUser", summary="Add a person: admin, or viewer (read-only) (admin)")
    async def create_user(self, auth: AuthService, principal: Principal, data: UserCreate) -> UserRead:
        return await auth.create_user(data.name, data.password, data.role, principal)

    @delete(
        "/{name:str}",
        operation_id="deleteUser",
        summary="Remove a person, their sessions and API tokens; never the last admin (admin)",
    )
    async def delete_user(self, auth: AuthService, principal: Principal, name: str) -> None:
        await auth.delete_user(name, principal)


class TokenController(Controller):
    path = "/api/tokens"
    tags = ["auth"]
    guards = [admin_only]

    @get("/", operation_id="listTokens", summary="API tokens, without their secrets (admin)")
    async def list_tokens(self, auth: AuthService) -> list[TokenRead]:
        return await auth.list_tokens()

    @post(
        "/",
        operation_id="createToken",
        summary="Create an API token (scope read or write); its secret is in this answer only (admin)",
    )
    async def create_token(self, auth: AuthService, principal: Principal, data: TokenCreate) -> TokenCreated:
        return await auth.create_token(data.name, data.scope, principal)

    @delete("/{token_id:int}", operation_id="revokeToken", summary="Revoke an API token at once (admin)")
    async def revoke_token(self, auth: AuthService, principal: Principal, token_id: int) -> None:
        await auth.revoke_token(token_id, principal)


CONTROLLERS = [AuthController, UserController, TokenController]
