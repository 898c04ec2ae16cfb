"""create_app(): the one place that assembles Litestar — routes, dependencies, templates, error mapping."""

from __future__ import annotations

from pathlib import Path

from litestar import Litestar
from litestar.contrib.jinja import JinjaTemplateEngine
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig

from . import __version__
from .flashing.api import CONTROLLERS as FLASHING_CONTROLLERS
from .flashing.pages import BoardPanelController
from .master import Master
from .web.api.adoptions import AdoptionController
from .web.api.fleet import DeviceController, GroupController
from .web.api.jobs import ExecutionController, JobController, TimelineController
from .web.api.live import LiveController
from .web.api.modules import ModuleController
from .web.api.roles import RoleController, RolloutController
from .web.pages.adoptions import AdoptionPanelController
from .web.pages.dashboard import DashboardController
from .web.pages.roles import RolePanelController
from .web.problems import HANDLERS

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboard"


def create_app(master: Master) -> Litestar:
    return Litestar(
        route_handlers=[
            AdoptionController, AdoptionPanelController, *FLASHING_CONTROLLERS, BoardPanelController,
            DeviceController, RoleController, GroupController, JobController, ExecutionController, TimelineController,
            LiveController, ModuleController, RolloutController, DashboardController, RolePanelController,
            create_static_files_router(path="/static", directories=[DASHBOARD / "static"]),
        ],
        dependencies={"master": Provide(lambda: master, sync_to_thread=False)},
        exception_handlers=HANDLERS,
        logging_config=None,  # the CLI configures logging once for the whole process
        template_config=TemplateConfig(directory=DASHBOARD / "templates", engine=JinjaTemplateEngine),
        openapi_config=OpenAPIConfig(
            title="pifleet", version=__version__, path="/schema", render_plugins=[ScalarRenderPlugin()],
            description="The master of a home fleet of MicroPython boards: devices, jobs, executions.",
        ),
    )
