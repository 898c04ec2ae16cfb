"""The master's parts, assembled: database, migrations, CoAP gateway, registry, Huey queue, job service.

`Master.start()` brings them up in order and `Master.stop()` closes them in reverse. The HTTP app (app.py) and
the CLI's `serve`/`demo` (cli.py) sit on top; tests start a Master the same way.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from .config import Settings
from .discovery.advertise import Advertiser
from .events import EventHub
from .flashing.catalog import Catalog
from .flashing.service import FlashService
from .flashing.usb import UsbWatcher
from .fleet.adoption import AdoptionService
from .fleet.modules import ModuleService
from .fleet.registry import Registry
from .fleet.roles import RoleService
from .fleet.sync import Syncer
from .gateway import adoption as adoption_resource
from .gateway.coap import Gateway
from .jobs.queue import JobQueue
from .jobs.runner import Runner
from .jobs.service import JobService
from .jobs.threshold import ThresholdWatcher
from .storage import devices as devices_q
from .storage import migrations, postgres

log = logging.getLogger(__name__)


class Master:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hub = EventHub()
        self.pool: asyncpg.Pool | None = None
        self.gateway = Gateway(settings.coap_host, settings.coap_port, keys_dir=settings.data_dir / "oscore")
        self._pg_server = None
        self._tasks: list[asyncio.Task] = []
        self.advertiser: Advertiser | None = None
        self.adoption: AdoptionService
        self.catalog: Catalog
        self.usb: UsbWatcher
        self.flashing: FlashService
        self.queue: JobQueue
        self.registry: Registry
        self.jobs: JobService
        self.runner: Runner

    def database_url(self) -> str:
        if self.settings.database_url:
            return self.settings.database_url
        if self._pg_server is None:
            self._pg_server = postgres.start_embedded(self.settings.data_dir / "pg")
        return postgres.embedded_url(self._pg_server)

    async def start(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        url = await asyncio.to_thread(self.database_url)
        self.pool = await postgres.create_pool(url)
        await migrations.migrate(self.pool)
        self.queue = JobQueue(url, workers=self.settings.workers)
        self.registry = Registry(self.pool, self.hub, self.gateway)
        self.jobs = JobService(self.pool, self.queue, self.hub, self.settings.location)
        self.modules = ModuleService(self.pool, self.hub)
        self.sync = Syncer(self.pool, self.hub, self.gateway, self.modules)
        self.roles = RoleService(self.pool, self.hub, self.modules, self.jobs, self.sync)
        self.registry.on_described = self.sync.registered
        await self.roles.store_presets()
        await self.modules.refresh_shipped()
        self.runner = Runner(self.jobs, self.registry, self.gateway, self.settings.command_timeout_s)
        await self.gateway.start(self.registry)
        for row in await devices_q.paired_boards(self.pool):
            self.gateway.pair(row["id"], row["oscore_id"], row["secret"], row["address"], row["port"])
        # adoption of boards without identity: POST /pair on the same CoAP endpoint
        self.adoption = AdoptionService(self.pool, self.hub)
        self.adoption.on_paired = self.paired
        adoption_resource.attach(self.gateway.site, self.adoption, self.gateway.counters)
        if self.settings.mdns:
            self.advertiser = Advertiser(self.settings.coap_host, self.settings.coap_port)
            await self.advertiser.start()  # best effort, in the background
        # flashing over USB: base-image catalog, USB board watch (1 s), flash jobs
        self.catalog = Catalog(self.pool, self.settings.data_dir / "firmware")
        self.usb = UsbWatcher(self.hub)
        self.flashing = FlashService(self.pool, self.hub, self.catalog, self.usb, self.settings)
        self.flashing.role_plan = self.roles.flash_plan
        self.flashing.on_paired = self.paired
        await self.flashing.recover()
        self._tasks.append(asyncio.create_task(self.usb.run(), name="usb-watch"))
        self.queue.start(asyncio.get_running_loop(), self.runner.run)
        await self.jobs.recover()
        self._tasks.append(asyncio.create_task(self.registry.watch(), name="device-watch"))
        self.thresholds = ThresholdWatcher(self.pool, self.gateway, self.jobs, self.settings.command_timeout_s)
        self._tasks.append(asyncio.create_task(self.thresholds.run(), name="threshold-watch"))
        log.info(
            "master ready: http %s, coap udp://%s:%d, data %s",
            self.settings.http_url,
            self.settings.coap_host,
            self.settings.coap_port,
            self.settings.data_dir,
        )

    async def paired(self, device_id: str) -> None:
        """A board got an identity (flashing, adoption): the gateway learns its OSCORE keys."""
        row = await devices_q.paired_board(self.pool, device_id)
        if row is not None:
            self.gateway.pair(row["id"], row["oscore_id"], row["secret"], row["address"], row["port"])

    async def revoke(self, device_id: str) -> bool:
        """A board can no longer speak for itself, at once: its keys and registration are forgotten. Flashing or
        adopting it again gives it a fresh secret."""
        found = await devices_q.revoke(self.pool, device_id)
        self.gateway.unpair(device_id)
        if found:
            log.warning("board %s revoked", device_id)
            self.hub.publish("devices")
        return found

    async def stop(self) -> None:
        if hasattr(self, "flashing"):
            await self.flashing.stop()  # a flash cut short is recorded as failed while the pool is open
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if hasattr(self, "sync"):
            await self.sync.stop()
        if hasattr(self, "queue"):
            # no new runs; then let the runs in progress finish (a blind move takes seconds)
            await asyncio.to_thread(self.queue.stop)
            await self.runner.drain(timeout=self.settings.command_timeout_s)
        if self.advertiser is not None:
            await self.advertiser.stop()
            self.advertiser = None
        await self.gateway.stop()
        if self.pool is not None:
            await self.pool.close()
            self.pool = None
        if self._pg_server is not None:
            await asyncio.to_thread(self._pg_server.cleanup)
            self._pg_server = None
