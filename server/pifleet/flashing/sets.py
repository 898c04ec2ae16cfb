"""Before a board switches to a MicroPython of another .mpy version: its agent and role modules built for that
version, pushed beside the ones it runs (docs/flashing.md, "Different .mpy versions").

Layer: service (no aiocoap); called by rollout.py for each board before its image goes out. A board keeps the set
its MicroPython loads at the root (agent/, caps/; agent/_mpy its key, sys.implementation._mpy & 1023) and one
other in mpy/KEY/; at a start, mpyset_swap.py swaps in the set for the MicroPython that runs, so the new image and a
rolled-back old one both find an agent they can load. The board side is micropython/agent/sets.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any, Protocol

import asyncpg

from .. import resources
from ..boardfs import bundle
from ..boardfs.mpy import mpy_key
from ..boardfs.stems import module_stem
from ..errors import BoardError, InvalidError
from ..model import DeviceRead
from ..modules.builds import mpy_arch
from ..storage import modules as modules_q

log = logging.getLogger(__name__)


class SetLink(Protocol):
    async def modules(self, address: str, port: int) -> dict[str, Any]: ...

    async def ota_set(self, address: str, port: int, delete: bool = False) -> dict[str, Any]: ...

    async def put_set_file(
        self, address: str, port: int, key: int | None, path: str, sha256: str, data: bytes
    ) -> dict[str, Any]: ...


async def _sources(pool: asyncpg.Pool, stems: list[str], arch: str) -> dict[str, tuple[str, str]]:
    """{stem: (source, march)} of the module versions a board holds: stored ones, else shipped ones."""
    found: dict[str, tuple[str, str]] = {}
    for stem in stems:
        name = stem.rsplit("_", 1)[0]
        for module in await modules_q.list_modules(pool, name):
            if module.stem == stem:
                source = await modules_q.source(pool, module.id)
                if source is not None:
                    found[stem] = (source, arch if module.declared.get("native") else "")
                break
        else:
            shipped = resources.capabilities() / f"{name}.py"
            if shipped.exists() and module_stem(name, text := shipped.read_text()) == stem:
                found[stem] = (text, "")
        if stem not in found:
            raise InvalidError(f"the master has no source of module {stem} to build it for the new MicroPython")
    return found


async def push_set(pool: asyncpg.Pool, link: SetLink, device: DeviceRead, version: str) -> int:
    """The set for MicroPython `version` onto the board, when that loads another .mpy version than the one it
    runs; the number of bytes sent (0: same version, nothing to push). BoardError when the board refuses a file
    or a module cannot be built."""
    assert device.address is not None and device.port is not None
    key = mpy_key(version)
    running = (device.mpy or 0) & 1023
    if not device.mpy or running == key:
        return 0
    address, port = device.address, device.port
    try:
        stems = sorted((await link.modules(address, port)).get("modules", {}))
        files = await asyncio.to_thread(bundle.agent_set, version, await _sources(pool, stems, mpy_arch(device.mpy)))
    except InvalidError as exc:
        raise BoardError(f"the agent for MicroPython {version} cannot be built: {exc.detail}") from None
    started = time.monotonic()
    await link.ota_set(address, port, delete=True)  # the root's set and this one are all the board keeps
    sent = 0
    root = resources.agent()
    # the pick at the start (boot.py, mpyset_swap.py) first, for a board flashed before it; the set's record last
    for path in [*bundle.ROOT_SOURCES, *sorted(set(files) - {bundle.MPY_RECORD}), bundle.MPY_RECORD]:
        data = (root / path).read_bytes() if path in bundle.ROOT_SOURCES else files[path]
        target = None if path in bundle.ROOT_SOURCES else key
        await link.put_set_file(address, port, target, path, hashlib.sha256(data).hexdigest(), data)
        sent += len(data)
    state = await link.ota_set(address, port)
    if key not in state.get("sets", []):
        raise BoardError(f"the board does not list the set for .mpy {key} after the push: {state}")
    log.info(
        "agent and %d role modules for .mpy %d (MicroPython %s) on %s beside its own (.mpy %d): %d bytes in %.1f s",
        len(stems),
        key,
        version,
        device.name,
        running,
        sent,
        time.monotonic() - started,
        extra={"device": device.id},
    )
    return sent
