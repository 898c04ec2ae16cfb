"""`pifleet demo`'s boards: virtual ESP32s flashed by the master exactly as a real board on USB would be.

An adapter over the services: the virtual chip's image goes into the firmware catalog, each board powers up with
a blank flash (its ROM waits on its serial port, which the USB watch lists), and the flash service writes it
with esptool — base image, partition table, the bundle with the agent and identity. The board then boots what
was written and registers. On a warm start a board already flashed for this master boots as it is.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from .boardfs.layout import LayoutError
from .config import Settings
from .flashing.model import FlashRequest
from .flashing.service import master_host
from .master import Master
from .sim import firmware
from .sim.board import VirtualBoard

log = logging.getLogger(__name__)

BOARDS = (("blind-1", "blind"), ("temp-1", "sensor"))
SIM_IMAGE_VERSION = "v1.29.0"  # the unix port the virtual chip runs


def _flashed_for(board: VirtualBoard, master: tuple[str, int]) -> bool:
    """Whether the board's flash holds a bundle that points at this master."""
    try:
        config = json.loads(board.read_files().get("config.json", b"{}"))
    except (LayoutError, ValueError):
        return False
    where = config.get("master") or {}
    return bool(config.get("device_id")) and (where.get("host"), where.get("port")) == master


async def start_boards(master: Master, settings: Settings, boards_dir: Path, boards: list[VirtualBoard]) -> None:
    """Power up (and on a cold start flash) the demo boards; each started board is appended to `boards` at once,
    so the caller stops whatever did start, even if a later one fails."""
    entry, _ = await master.catalog.add(firmware.build_image(version=SIM_IMAGE_VERSION), source="virtual")
    address = (master_host(settings), settings.coap_port)
    for name, role in BOARDS:
        board = VirtualBoard(name, boards_dir / name, role=role, erased=True, master=address)
        fresh = not _flashed_for(board, address)
        await asyncio.to_thread(board.start)
        boards.append(board)
        if fresh:
            await flash(master, board, role, entry.id)


async def flash(master: Master, board: VirtualBoard, role: str, firmware_id: int) -> None:
    job = await master.flashing.start(
        FlashRequest(port=board.serial_port, name=board.name, role=role, firmware=firmware_id)
    )
    job = await master.flashing.wait(job.id)
    if job.state != "done":
        raise RuntimeError(f"flashing demo board {board.name} failed: {job.error}")
    log.info("demo: flashed %s as %s (%s, %d bytes)", board.name, job.device_id, role, job.bytes or 0)
