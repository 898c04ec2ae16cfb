"""Flash & pair: write a board's base image and provisioning bundle over USB, then record its identity.

Layer: service (no litestar). A flash is a job (flash_jobs row) run in the background: probe the chip →
refuse an image for another chip before anything is written → identity (the device known by this MAC keeps
its id unless a factory reset is asked; otherwise a new id from the one scheme, devices/identity.py; always a fresh
secret) → build the
bundle → one esptool write of base image + littlefs image, compressed and MD5-verified → reset → record.
The device, its MAC and its secret are committed only after a verified write, so a failed flash leaves the
previous state of the device as it was; the job row says what went wrong. Progress goes to the job row and to
the event hub ("flash"). Secrets and the Wi-Fi key never reach a log line or an API answer.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from ..boardfs import bundle, layout
from ..config import Settings
from ..devices.identity import device_id_for, new_secret
from ..errors import ConflictError, InvalidError, NotFoundError, PifleetError
from ..events import EventHub
from ..metrics import Metrics
from ..roles.presets import role_caps
from ..storage import devices as devices_q
from . import flasher
from . import storage as q
from .catalog import Catalog
from .model import ChipInfo, FlashJobRead, FlashRequest, UsbBoard
from .usb import UsbWatcher

log = logging.getLogger(__name__)

RolePlan = Callable[[str], Awaitable[tuple[dict, dict[str, str] | None]]]


def master_host(settings: Settings) -> str:
    """The address a board should use for the master: the advertised one, the CoAP bind address, or (for a
    wildcard bind) this host's address on its default route."""
    if settings.advertised_host:
        return settings.advertised_host
    if settings.coap_host not in ("0.0.0.0", "::", ""):
        return settings.coap_host
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET: no packet is sent, the kernel just picks the source address
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


class _Pending:
    """What a running flash has decided, kept in memory until the write is verified."""

    def __init__(self) -> None:
        self.device_id: str | None = None
        self.secret: bytes | None = None
        self.oscore_id: bytes | None = None
        self.replaces: str | None = None
        self.firmware_version: str | None = None


class FlashService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        hub: EventHub,
        catalog: Catalog,
        usb: UsbWatcher,
        settings: Settings,
        *,
        role_plan: RolePlan | None = None,
        paired: Callable[[str], Awaitable[None]] | None = None,
        metrics: Metrics | None = None,
        wifi: Callable[[], dict | None] | None = None,
    ) -> None:
        self.pool = pool
        # config.json's "wifi": the fleet's networks (pifleet/wifi.py); else PIFLEET_WIFI_SSID/PIFLEET_WIFI_PSK
        self.wifi = wifi
        self.metrics = metrics or Metrics()
        self.hub = hub
        self.catalog = catalog
        self.usb = usb
        self.settings = settings
        self._tasks: set[asyncio.Task] = set()
        self._notes: dict[str, set[asyncio.Task]] = {}  # job id -> its progress writes still running
        self.last_timing: dict[str, float] = {}  # of the last flash, for the benchmark
        # role name -> ({capability: configuration}, {capability: module source}): the role service's (roles
        # are data); the presets and shipped modules when none is given
        self.role_plan: RolePlan = role_plan or self._preset_plan
        # called with the device id after a board got its identity: the gateway learns its OSCORE keys
        self.on_paired = paired

    @staticmethod
    async def _preset_plan(role: str) -> tuple[dict, dict[str, str] | None]:
        return role_caps(role), None

    async def recover(self) -> None:
        failed = await q.fail_unfinished(self.pool)
        if failed:
            log.info("%d flash job(s) of a previous run marked failed", failed)

    async def start(self, req: FlashRequest) -> FlashJobRead:
        """Check what can be checked without the board, record the job, run it in the background."""
        if req.port not in self.usb.boards:
            await self.usb.scan()
        self.usb.get(req.port)
        if req.port in self.usb.busy:
            raise ConflictError(f"port {req.port} is busy (a probe or flash is running)", field="port")
        await self.role_plan(req.role)  # an unknown role is refused before anything happens
        if req.firmware is not None:
            entry = await self.catalog.get(req.firmware)
            await self.catalog.read_verified(entry)
        self.usb.busy.add(req.port)
        try:
            job = await q.create_job(
                self.pool,
                port=req.port,
                name=req.name,
                role=req.role,
                firmware_id=req.firmware,
                factory_reset=req.factory_reset,
            )
        except BaseException:
            self.usb.busy.discard(req.port)
            raise
        log.info(
            "flash %s: %s as %r (role %s)%s",
            job.id,
            req.port,
            req.name,
            req.role,
            ", factory reset" if req.factory_reset else "",
        )
        task = asyncio.get_running_loop().create_task(self._run(job.id, req), name=f"flash-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.hub.publish("flash")
        return job

    async def boards(self) -> list[UsbBoard]:
        """The USB boards now, each with its probe result and the known device of that MAC."""
        boards = self.usb.snapshot()
        known = await devices_q.device_names(self.pool, [b.probe.mac for b in boards if b.probe])
        for board in boards:
            if board.probe and board.probe.mac in known:
                board.device_id, board.device_name = known[board.probe.mac]
        return boards

    async def jobs(self, limit: int = 20) -> list[FlashJobRead]:
        """Recent flash jobs, newest first."""
        return await q.list_jobs(self.pool, limit)

    async def get(self, job_id: str) -> FlashJobRead:
        job = await q.get_job(self.pool, job_id)
        if job is None:
            raise NotFoundError(f"no flash job {job_id}", field="id")
        return job

    async def wait(self, job_id: str) -> FlashJobRead:
        """Until the job has finished (for tests and the benchmark in-process)."""
        for task in list(self._tasks):
            if task.get_name() == f"flash-{job_id}":
                await asyncio.shield(task)
        return await self.get(job_id)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- the job -------------------------------------------------------------------------------------------------

    async def _run(self, job_id: str, req: FlashRequest) -> None:
        loop = asyncio.get_running_loop()
        pending = _Pending()
        board = self.usb.boards.get(req.port)
        virtual = bool(board and board.virtual)
        last = {"progress": -1, "at": 0.0}
        started = time.monotonic()

        def prepare(info: ChipInfo) -> list[tuple[int, bytes]]:  # worker thread
            return asyncio.run_coroutine_threadsafe(self._prepare(job_id, req, info, pending), loop).result()

        def on_phase(phase: str) -> None:  # worker thread
            progress = 5 if phase == "writing" else 99
            loop.call_soon_threadsafe(self._set, job_id, {"state": phase, "progress": progress})

        def on_progress(done: int, total: int) -> None:  # worker thread
            progress = 5 + 90 * done // max(total, 1)
            now = time.monotonic()
            if progress != last["progress"] and (now - last["at"] > 0.1 or progress >= 95):
                last["progress"], last["at"] = progress, now
                loop.call_soon_threadsafe(self._set, job_id, {"progress": progress})

        try:
            await q.update_job(self.pool, job_id, state="probing", progress=1)
            self.hub.publish("flash")
            try:
                info, result = await asyncio.to_thread(
                    flasher.flash,
                    req.port,
                    prepare,
                    virtual=virtual,
                    baud=req.baud,
                    on_phase=on_phase,
                    on_progress=on_progress,
                )
            finally:
                # the thread's progress notes were queued before its result: let them land before the outcome
                await self._notes_written(job_id)
            assert pending.device_id is not None and pending.secret is not None and pending.oscore_id is not None
            async with self.pool.acquire() as conn:
                await devices_q.record_identity(
                    conn,
                    device_id=pending.device_id,
                    name=req.name,
                    role=req.role,
                    mac=info.mac,
                    secret=pending.secret,
                    oscore_id=pending.oscore_id,
                    firmware=pending.firmware_version or "",
                    replaces=pending.replaces,
                )
            if self.on_paired is not None:
                await self.on_paired(pending.device_id)
            await q.update_job(
                self.pool, job_id, state="done", progress=100, bytes=result.bytes_written, bytes_sent=result.bytes_sent
            )
            self.last_timing = {
                "write_s": result.seconds,
                "total_s": time.monotonic() - started,
                "bytes": result.bytes_written,
                "bytes_sent": result.bytes_sent,
            }
            self.usb.remember(req.port, info)
            log.info(
                "flash %s: %s is now %s (%s, %d bytes, %d sent, %.1f s)",
                job_id,
                req.port,
                pending.device_id,
                info.chip,
                result.bytes_written,
                result.bytes_sent,
                result.seconds,
            )
            self.hub.publish("devices")
            self.metrics.flashes.labels("succeeded").inc()
        except PifleetError as e:
            log.info("flash %s failed: %s", job_id, e.detail)
            await self._fail(job_id, e.detail)
        except asyncio.CancelledError:
            await asyncio.shield(self._fail(job_id, "the master stopped during this flash"))
            raise
        except Exception as e:  # noqa: BLE001 - recorded, and the port is freed
            log.exception("flash %s failed unexpectedly", job_id)
            await self._fail(job_id, f"internal error: {type(e).__name__}: {e}")
        finally:
            self.usb.busy.discard(req.port)
            self.hub.publish("flash")

    async def _fail(self, job_id: str, error: str) -> None:
        self.metrics.flashes.labels("failed").inc()
        await q.update_job(self.pool, job_id, state="failed", error=error)

    def _set(self, job_id: str, fields: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._write(job_id, fields))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        notes = self._notes.setdefault(job_id, set())
        notes.add(task)
        task.add_done_callback(notes.discard)

    async def _notes_written(self, job_id: str) -> None:
        notes = self._notes.pop(job_id, set())
        await asyncio.gather(*notes, return_exceptions=True)

    async def _write(self, job_id: str, fields: dict[str, Any]) -> None:
        try:
            await q.update_job(self.pool, job_id, **fields)
        except (OSError, asyncpg.PostgresError):
            log.exception("could not record the progress of flash %s", job_id)
        self.hub.publish("flash")

    async def _prepare(
        self, job_id: str, req: FlashRequest, info: ChipInfo, pending: _Pending
    ) -> list[tuple[int, bytes]]:
        """After the probe, before any write: firmware for this chip, identity, bundle. Raising here aborts
        the flash with nothing written."""
        await q.update_job(self.pool, job_id, chip=info.chip, mac=info.mac, progress=3)
        ota = self.settings.flash_ota if req.ota is None else req.ota
        if req.firmware is not None:
            entry = await self.catalog.get(req.firmware)
            if ota and not entry.ota and req.ota:
                raise InvalidError(
                    f"firmware {entry.id} (MicroPython {entry.version}) has no OTA partition table: choose an "
                    "OTA image (ESP32_GENERIC-OTA) for --ota",
                    field="firmware",
                )
        else:
            entry = await self.catalog.newest_for(info.chip, ota=ota)
            if entry is None:
                raise InvalidError(
                    f"the board on {req.port} is an {info.chip}, and the catalog has no "
                    f"{'OTA-capable ' if ota else ''}base image for it: add one with `pifleet firmware add FILE`",
                    field="firmware",
                )
        if entry.chip != info.chip:
            raise flasher.WrongChipError(
                f"firmware {entry.id} is MicroPython {entry.version} for {entry.chip}, but the board on {req.port} "
                f"is an {info.chip}: refused before writing anything",
                field="firmware",
            )
        image = await self.catalog.read_verified(entry)
        await q.update_job(self.pool, job_id, firmware_id=entry.id)

        known = await devices_q.device_by_mac(self.pool, info.mac)
        # Every flash gets a fresh secret, a re-flash too: the board's OSCORE sequence numbers restart with its
        # erased filesystem, and under the old keys that would reuse nonces (RFC 8613 §7.5).
        if known is not None and not req.factory_reset:
            device_id = known["id"]  # a board paired before keeps its id, whatever scheme named it then
        else:
            device_id = device_id_for(info.mac, fresh=known is not None)
            while await devices_q.device_exists(self.pool, device_id):
                device_id = device_id_for(info.mac, fresh=True)
            pending.replaces = known["id"] if known is not None else None
        secret = new_secret()
        owner = await devices_q.name_taken_by(self.pool, req.name)
        if owner is not None and owner not in (device_id, pending.replaces):
            raise ConflictError(f"the name {req.name!r} belongs to device {owner}; choose another name", field="name")
        pending.device_id, pending.secret, pending.firmware_version = device_id, secret, entry.version
        pending.oscore_id = await devices_q.next_oscore_id(self.pool)
        await q.update_job(self.pool, job_id, device_id=device_id)

        identity = bundle.Identity(device_id, req.name, req.role, secret, pending.oscore_id)
        t = time.perf_counter()
        caps, sources = await self.role_plan(req.role)
        built = await asyncio.to_thread(
            bundle.build,
            identity,
            image=image,
            image_offset=entry.offset,
            version=entry.version,
            flash_size=info.flash_size,
            master=(master_host(self.settings), self.settings.coap_port),
            wifi=(self.wifi and self.wifi()) or (self.settings.wifi_ssid, self.settings.wifi_psk),
            caps=caps,
            sources=sources,
            lifetime=req.lifetime_s,
        )
        self.last_timing = {"bundle_s": time.perf_counter() - t}
        log.info(
            "flash %s: bundle for %s built (%d files, vfs at %#x, %s)",
            job_id,
            device_id,
            len(built.files),
            built.offset,
            built.mpy_cross,
        )
        writes = [(entry.offset, image), (built.offset, built.image)]
        otadata = _otadata(image, entry.offset) if entry.ota else None
        if otadata is not None and otadata.end > entry.offset + len(image):
            # a merged image pads otadata with 0xFF (ota_data_initial.bin, as idf.py writes it): the board starts
            # in ota_0, no earlier update's choice survives a reflash; an image that stops short gets it erased
            writes.insert(1, (otadata.offset, b"\xff" * otadata.size))
        return writes


def _otadata(image: bytes, offset: int):
    """The image's otadata partition (erased at flash time, so no earlier update's choice survives a reflash)."""
    at = layout.TABLE_OFFSET - offset
    try:
        parts = layout.parse_partition_table(image[at : at + layout.TABLE_SIZE])
    except layout.LayoutError:
        return None
    return next((p for p in parts if p.type == layout.DATA and p.subtype == 0x00), None)
