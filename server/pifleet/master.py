"""The master's parts, assembled: database, migrations, CoAP gateway, services, Huey queue, background watches.

Several masters may share one database, each a site (sites/, `pifleet serve --site NAME`): the master's database
sessions say which site they work for, its Huey queue is its site's, and the services reach boards through a
`SiteLink` (this master's gateway for its own boards, the owner's master for the others').

Assembly only, no business logic: `Master.start()` builds each part, hands it its collaborators at construction
(no part is wired to another afterwards) and enters its lifespan into one AsyncExitStack; `Master.stop()` closes
that stack, so parts stop in the reverse order of their start. The HTTP app (app.py) provides each service to
the controllers on its own; the CLI's `serve`/`demo` start a Master, and tests start one the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine

import asyncpg

from .config import Settings
from .devices.adoption import AdoptionService
from .devices.logs import BoardLogs
from .devices.pairing import PairingService
from .devices.registry import Registry
from .devices.service import DeviceService
from .discovery.advertise import Advertiser
from .events import EventHub
from .flashing.catalog import Catalog
from .flashing.rollout import FirmwareRollouts
from .flashing.service import FlashService
from .flashing.usb import UsbWatcher
from .gateway import adoption as adoption_resource
from .gateway import logs as logs_resource
from .gateway.coap import Gateway
from .jobs.autonomy import Autonomy
from .jobs.commands import CommandService
from .jobs.queue import JobQueue
from .jobs.runner import Runner
from .jobs.service import JobService
from .jobs.threshold import ThresholdWatcher
from .metrics import Metrics
from .modules.builds import ModuleService
from .modules.rollouts import RolloutService
from .modules.sync import Syncer
from .ops import backup as backups
from .roles.service import RoleService
from .settings import SettingsService
from .sites import session_url
from .sites.locks import DeviceLocks
from .sites.relay import SiteLink
from .sites.service import Sites
from .storage import migrations, postgres
from .wifi import WifiService

log = logging.getLogger(__name__)


class Master:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hub = EventHub()
        self.metrics = Metrics()  # this master's own registry (GET /metrics)
        self.pool: asyncpg.Pool | None = None
        self.gateway = Gateway(
            settings.coap_host, settings.coap_port, keys_dir=settings.data_dir / "oscore", metrics=self.metrics
        )
        self._pg_server = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._tasks: list[asyncio.Task] = []
        self.advertiser: Advertiser | None = None
        self.pairing: PairingService
        self.adoption: AdoptionService
        self.catalog: Catalog
        self.usb: UsbWatcher
        self.flashing: FlashService
        self.firmware_rollouts: FirmwareRollouts
        self.queue: JobQueue
        self.registry: Registry
        self.jobs: JobService
        self.modules: ModuleService
        self.sync: Syncer
        self.rollouts: RolloutService
        self.devices: DeviceService
        self.roles: RoleService
        self.runner: Runner
        self.commands: CommandService
        self.household: SettingsService
        self.board_logs: BoardLogs
        self.thresholds: ThresholdWatcher
        self.sites: Sites
        self.link: SiteLink
        self.locks: DeviceLocks

    def database_url(self) -> str:
        if self.settings.database_url:
            return self.settings.database_url
        if self._pg_server is None:
            self._pg_server = postgres.start_embedded(self.settings.data_dir / "pg")
        return postgres.embedded_url(self._pg_server)

    async def _described(self, device_id: str, described: dict) -> None:
        """A board registered and said what it runs: its role in line first, then its plan."""
        await self.sync.registered(device_id, described)
        await self.autonomy.described(device_id, described)

    async def start(self) -> None:
        stack = contextlib.AsyncExitStack()
        try:
            await self._assemble(stack)
        except BaseException:
            await stack.aclose()  # what did start stops again, in reverse
            raise
        self._stack = stack

    async def stop(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def _assemble(self, stack: contextlib.AsyncExitStack) -> None:
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        stack.push_async_callback(self._stop_embedded_postgres)
        url = await asyncio.to_thread(self.database_url)
        site_url = session_url(url, settings.site)  # its sessions say which site they work for (sql/0018)
        self.pool = pool = await postgres.create_pool(site_url)
        stack.push_async_callback(self._close_pool)
        await migrations.migrate(pool)

        hub, gateway = self.hub, self.gateway
        self.sites = Sites(
            pool,
            site_url,
            settings.site,
            local=gateway,
            on_run=self._announced,
            hub=hub,
            http_url=settings.http_url,
            coap=f"{settings.coap_reachable_host}:{settings.coap_port}",
        )
        self.link = link = SiteLink(gateway, self.sites)  # every site's boards: its own through the gateway
        self.locks = DeviceLocks(site_url)
        self.queue = JobQueue(
            url, workers=settings.workers, site=settings.site, live=self.sites.live, notice=Sites.run_notice
        )
        # the household's settings (location, time zone); a new location re-plans the sun triggers' runs
        self.household = SettingsService(pool, settings, hub, changed=lambda: self.jobs.replan_sun())
        await self.household.load()
        self.wifi = WifiService(pool, hub, gateway, settings)  # the fleet's networks (flashing, pushes)
        await self.wifi.load()
        self.jobs = JobService(pool, self.queue, hub, self.household.location)
        self.modules = ModuleService(pool, hub)
        self.sync = Syncer(pool, hub, link, self.modules, self.metrics, locks=self.locks)
        self.rollouts = RolloutService(pool, hub, link, self.modules, self.sync)
        self.roles = RoleService(pool, hub, self.modules, self.jobs, self.sync)
        # a board's own timed runs while the master is away: its plan after each registration (jobs/autonomy.py)
        self.autonomy = Autonomy(self.jobs, gateway, hub)
        self.registry = Registry(pool, hub, gateway, described=self._described)
        stack.push_async_callback(self.registry.close)  # buffered telemetry is written after the gateway stopped
        self.registry.on_heard = self.autonomy.soon
        self.sync.on_switched = self.registry.switched  # its links update after a switch needs no GET /cap
        self.rollouts.relinked = self.registry.relinked  # that update is a rollout's health check too
        self.pairing = PairingService(pool, hub, keys=gateway)
        self.devices = DeviceService(pool, link, self.pairing, self.sync.sync)
        self.metrics.read_boards(self.devices.list)
        self.metrics.read_pool(pool)
        await self.roles.store_presets()
        await self.modules.refresh_shipped()
        self.runner = Runner(
            self.jobs,
            self.registry,
            link,
            settings.command_timeout_s,
            self.metrics,
            locks=self.locks,
            replan=self.autonomy.push,
        )
        self.commands = CommandService(pool, self.runner, hub)

        await gateway.start(self.registry)
        stack.push_async_callback(gateway.stop)
        await self.pairing.restore()
        # adoption of boards without identity: POST /pair on the same CoAP endpoint
        self.adoption = AdoptionService(pool, hub, paired=self.pairing.paired)
        adoption_resource.attach(gateway.site, self.adoption, gateway.counters)
        # what the boards print: POST /l, kept per board and streamed to whoever follows it
        self.board_logs = BoardLogs(pool, hub, self.metrics)
        logs_resource.attach(gateway.site, self.board_logs, gateway.counters, gateway.paired)
        if settings.mdns:
            self.advertiser = Advertiser(settings.coap_host, settings.coap_port)
            await self.advertiser.start()  # best effort, in the background
            stack.push_async_callback(self._stop_advertiser)

        # flashing over USB: base-image catalog, USB board watch (1 s), flash jobs
        self.catalog = Catalog(pool, settings.data_dir / "firmware")
        self.usb = UsbWatcher(hub)
        self.flashing = FlashService(
            pool,
            hub,
            self.catalog,
            self.usb,
            settings,
            role_plan=self.roles.flash_plan,
            paired=self.pairing.paired,
            metrics=self.metrics,
            wifi=self.wifi.board_config,
        )
        await self.flashing.recover()
        # MicroPython itself over the air (docs/flashing.md, "OTA"): this site's boards, through its gateway
        self.firmware_rollouts = FirmwareRollouts(pool, hub, self.catalog, gateway)
        stack.push_async_callback(self._cancel_background)  # only matters if the start fails before the one below
        self._background(self.usb.run(), "usb-watch")
        await self.locks.start()
        stack.push_async_callback(self.locks.stop)
        # the site is there (heartbeat, LISTEN) before its first run; it stops after the runs in progress (they may
        # wait for another site's answer)
        await self.sites.start()
        stack.push_async_callback(self.sites.stop)
        self.queue.start(asyncio.get_running_loop(), self.runner.run)
        stack.push_async_callback(self._stop_queue)
        stack.push_async_callback(self.sync.stop)
        stack.push_async_callback(self.rollouts.stop)
        stack.push_async_callback(self.firmware_rollouts.stop)
        stack.push_async_callback(self.wifi.stop)
        stack.push_async_callback(self._cancel_background)  # the watches stop before sync, rollouts and the queue
        # a flash cut short is recorded as failed while the pool is open: the first part to stop
        stack.push_async_callback(self.flashing.stop)
        await self.jobs.recover()
        await self.firmware_rollouts.resume()  # firmware rollouts a master left running go on where they were
        self.autonomy.start()
        stack.push_async_callback(self.autonomy.stop)
        self._background(self.registry.watch(), "device-watch")
        self._background(self.wifi.watch(), "wifi-watch")  # boards back on an old network after a push
        # each site reads the threshold sources it owns (two sites reading one would plan its runs twice)
        self.thresholds = ThresholdWatcher(pool, gateway, self.jobs, settings.command_timeout_s, owns=gateway.paired)
        self._background(self.thresholds.run(), "threshold-watch")
        if schedule := backups.schedule_from_env():  # PIFLEET_BACKUP_DIR: a daily backup, the oldest pruned
            self._background(backups.run_daily(schedule, settings.data_dir, url), "daily-backup")
        log.info(
            "master ready: site %s, http %s, coap udp://%s:%d, data %s",
            settings.site,
            settings.http_url,
            settings.coap_host,
            settings.coap_port,
            settings.data_dir,
        )

    # -- lifespans ------------------------------------------------------------------------------------------------

    def _announced(self, execution_id, attempt: int, when) -> None:
        """Another site planned a run of one of this site's boards, due soon: this master's alarm starts it."""
        if self.queue.alarm is not None:
            self.queue.alarm.add(execution_id, attempt, when)

    def _background(self, coro: Coroutine, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def _cancel_background(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _stop_queue(self) -> None:
        # no new runs; then let the runs in progress finish (a blind move takes seconds)
        await asyncio.to_thread(self.queue.stop)
        await self.runner.drain(timeout=self.settings.command_timeout_s)

    async def _stop_advertiser(self) -> None:
        if self.advertiser is not None:
            await self.advertiser.stop()
            self.advertiser = None

    async def _close_pool(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    async def _stop_embedded_postgres(self) -> None:
        if self._pg_server is not None:
            await asyncio.to_thread(self._pg_server.cleanup)
            self._pg_server = None
