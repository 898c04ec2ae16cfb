"""create_app(): the one place that assembles Litestar — routes, dependencies, templates, error mapping, and the
login every route needs except the few listed in PUBLIC.

Access is decided here, once, for every route (also routes added later, by anyone): `require_login` is an app
guard, so no controller can forget it; a route is public only if its path template is in PUBLIC.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from litestar import Litestar, Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import Provide
from litestar.handlers import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig

from . import __version__, resources
from .auth import keys
from .auth.errors import ForbiddenError, TooManyAttemptsError, UnauthenticatedError
from .auth.service import AuthService
from .master import Master
from .web.api.adoptions import AdoptionController
from .web.api.auth import CONTROLLERS as AUTH_CONTROLLERS
from .web.api.auth import authenticate, current_principal
from .web.api.commands import CONTROLLERS as COMMAND_CONTROLLERS
from .web.api.flashing import CONTROLLERS as FLASHING_CONTROLLERS
from .web.api.fleet import DeviceController, GroupController
from .web.api.health import HealthController
from .web.api.jobs import ExecutionController, JobController, TimelineController
from .web.api.live import LiveController
from .web.api.logs import LogController
from .web.api.metrics import MetricsController
from .web.api.modules import ModuleController
from .web.api.roles import RoleController, RolloutController
from .web.api.settings import SettingsController
from .web.api.wifi import WifiController
from .web.contract import ApiContract
from .web.headers import security_headers
from .web.pages.adoptions import AdoptionPanelController
from .web.pages.boards import BoardPanelController
from .web.pages.dashboard import DashboardController
from .web.pages.device import DevicePageController
from .web.pages.firmware import FirmwareRolloutPanelController
from .web.pages.jobs import JobsPageController
from .web.pages.login import CONTROLLERS as LOGIN_CONTROLLERS
from .web.pages.roles import RolePanelController
from .web.pages.settings import SettingsPageController, local_filter
from .web.pages.timeline import TimelinePageController
from .web.problems import HANDLERS, problem
from .web.schema import LocalRedoc

DASHBOARD = resources.dashboard()

# The only routes anyone may use without logging in (path templates, as routed).
PUBLIC = frozenset({"/api/health", "/api/login", "/api/setup", "/login", "/setup", "/static/{file_path}"})
# What a read-only principal (viewer, read token) may do besides reading: end its own session.
ANY_PRINCIPAL = frozenset({"/api/logout", "/logout"})
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_FORM = ("application/x-www-form-urlencoded", "multipart/form-data")


async def require_login(connection: ASGIConnection, _handler: BaseRouteHandler) -> None:
    """Every request: who is it (API token, else session cookie), may it do this (role, scope), and for a
    cookie, is this unsafe request really from our page (CSRF token)."""
    method = connection.scope.get("method", "GET")
    if method not in SAFE and connection.headers.get("sec-fetch-site") == "cross-site":
        raise ForbiddenError("cross-site requests that change something are refused")
    template = connection.scope.get("path_template")
    if template in PUBLIC:
        return
    principal = await authenticate(connection, connection.app.state.auth)
    connection.state.principal = principal
    if method in SAFE:
        return
    if principal.via == "session":  # the cookie comes with any request the browser makes: ask for proof
        sent = connection.headers.get("x-csrf-token")
        if sent is None and isinstance(connection, Request) and connection.content_type[0] in _FORM:
            sent = (await connection.form()).get("_csrf")
        if not keys.same_csrf(sent, principal.csrf):
            raise ForbiddenError(
                "missing or wrong CSRF token (header X-CSRF-Token or form field _csrf)", field="X-CSRF-Token"
            )
    if template not in ANY_PRINCIPAL and not principal.may_write:
        what = "a read-only API token" if principal.via == "token" else f"{principal.name} is a viewer"
        raise ForbiddenError(f"{what}: only reading (GET) is allowed")


def _unauthenticated(request: Request, exc: UnauthenticatedError) -> Response:
    """The dashboard goes to the login page; htmx fragments make the whole page go there; the API says 401."""
    path = request.url.path
    if request.headers.get("hx-request") == "true":
        response = problem(401, exc.title, exc.detail, exc.field)
        response.headers["HX-Redirect"] = "/login"
        return response
    if not path.startswith("/api/") and "text/html" in request.headers.get("accept", ""):
        target = path + (f"?{request.url.query}" if request.url.query else "")
        return Redirect(f"/login?next={quote(target, safe='/')}", status_code=303)
    response = problem(401, exc.title, exc.detail, exc.field)
    response.headers["WWW-Authenticate"] = 'Bearer realm="pifleet"'
    return response


def _too_many(request: Request, exc: TooManyAttemptsError) -> Response:
    response = problem(429, exc.title, exc.detail, exc.field)
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


def services(master: Master) -> dict[str, Provide]:
    """One provider per service the controllers call (litestar-fullstack's domain dependencies): a controller
    names the service it needs (`device_service: DeviceService`) and gets that one, never the Master. Each is looked up
    when a request asks for it: building the app touches no service."""

    def provide(service: Callable[[], object]) -> Provide:
        return Provide(service, sync_to_thread=False)

    # A provider must not share its name with a field of a request body or a parameter: Litestar reports a body
    # that fails validation at a field named like a dependency as the dependency's failure, a 500 (found by
    # tests/fuzz: PUT /api/groups/NAME {"devices": 5}). Hence device_service, not devices.
    return {
        "device_service": provide(lambda: master.devices),
        "job_service": provide(lambda: master.jobs),
        "module_service": provide(lambda: master.modules),
        "role_service": provide(lambda: master.roles),
        "command_service": provide(lambda: master.commands),
        "settings_service": provide(lambda: master.household),
        "wifi_service": provide(lambda: master.wifi),
        "rollouts": provide(lambda: master.rollouts),
        "flashing": provide(lambda: master.flashing),
        "catalog": provide(lambda: master.catalog),
        "firmware_rollouts": provide(lambda: master.firmware_rollouts),
        "usb": provide(lambda: master.usb),
        "adoption": provide(lambda: master.adoption),
        "hub": provide(lambda: master.hub),
        "board_logs": provide(lambda: master.board_logs),
        "metrics": provide(lambda: master.metrics),
    }


def create_app(master: Master, auth: AuthService | None = None) -> Litestar:
    """The app over a master's services (see `services`), the login guard, templates and error mapping."""
    auth = auth or AuthService(master.pool)
    return Litestar(
        route_handlers=[
            HealthController,
            AdoptionController,
            AdoptionPanelController,
            *FLASHING_CONTROLLERS,
            BoardPanelController,
            FirmwareRolloutPanelController,
            DeviceController,
            LogController,
            RoleController,
            GroupController,
            *COMMAND_CONTROLLERS,
            SettingsController,
            WifiController,
            JobController,
            ExecutionController,
            TimelineController,
            LiveController,
            MetricsController,
            ModuleController,
            RolloutController,
            DashboardController,
            DevicePageController,
            JobsPageController,
            TimelinePageController,
            RolePanelController,
            SettingsPageController,
            *AUTH_CONTROLLERS,
            *LOGIN_CONTROLLERS,
            create_static_files_router(path="/static", directories=[DASHBOARD / "static"]),
        ],
        guards=[require_login],
        before_send=[security_headers],  # CSP, no framing, nosniff, same-origin referrers: on every answer
        state=State({"auth": auth}),
        dependencies={
            **services(master),
            "auth": Provide(lambda: auth, sync_to_thread=False),
            "principal": Provide(current_principal, sync_to_thread=False),
        },
        exception_handlers={**HANDLERS, UnauthenticatedError: _unauthenticated, TooManyAttemptsError: _too_many},
        plugins=[ApiContract(public=PUBLIC)],  # every route's error answers and security in the OpenAPI schema
        logging_config=None,  # the CLI configures logging once for the whole process
        template_config=TemplateConfig(
            directory=DASHBOARD / "templates",
            engine=JinjaTemplateEngine,
            # {{ instant | local }}: times on every page in the master's time zone (its settings, as they are now)
            engine_callback=lambda jinja: jinja.engine.filters.update(
                local=local_filter(lambda: master.household.zone())
            ),
        ),
        openapi_config=OpenAPIConfig(
            title="pifleet",
            version=__version__,
            path="/schema",
            render_plugins=[LocalRedoc()],  # Redoc, vendored in dashboard/static (web/schema.py)
            description="The master of a home fleet of MicroPython boards: devices, jobs, executions. Every route "
            "but login, setup and health needs a session cookie (and X-CSRF-Token on unsafe requests) "
            "or an API token: Authorization: Bearer pft_….",
        ),
    )
