"""The whole fleet as one BoardLink: an exchange with a board this master owns goes out through its own gateway;
one with another site's board is handed to that site's master (sites/service.py `Sites.call`), which holds the
board's OSCORE context, and its answer (or error) comes back as if it had been made here.

A board is this master's when the gateway holds its keys, or (an exchange by address) protects what goes to that
address with keys it holds: no database read on that path, which a module push takes three times for each board.
Otherwise its site is read from the database (by device id, or by the address it registered from). Layer: service.
"""

from __future__ import annotations

from typing import Any

from ..devices.link import BoardLink
from ..errors import BoardError
from . import storage as q
from .service import Sites

CALL_MARGIN_S = 5.0  # beyond the exchange's own timeout: the two notices and the database
OTHER_TIMEOUT_S = 180.0  # exchanges without a timeout of their own (a module pushed block by block)


class SiteLink:
    """devices.link.BoardLink over every site's boards. `owns(device_id)`: whether this master holds the keys."""

    def __init__(self, local: Any, sites: Sites) -> None:
        self.local: BoardLink = local
        self._owns = local.paired
        self._owns_at = local.paired_at
        self.sites = sites

    def __getattr__(self, name: str) -> Any:
        # what the gateway offers beyond these (a newer BoardLink method) reaches this master's own boards
        return getattr(self.local, name)

    def bind(self, device_id: str, address: str, port: int) -> None:
        self.local.bind(device_id, address, port)  # only a board registering here, with this master

    async def capabilities(self, address: str, port: int) -> dict[str, Any]:
        return await self.local.capabilities(address, port)  # read right after a registration here

    async def _site_of(self, device_id: str | None, address: str, port: int) -> str | None:
        """None: this master's own board (or one nobody owns: tried here, as before sites)."""
        ours = self._owns(device_id) if device_id is not None else self._owns_at(address, port)
        if ours:
            return None
        site = await q.device_site(self.sites.pool, device_id) if device_id else None
        if site is None:
            site = await q.site_at(self.sites.pool, address, port)
        return None if site in (None, self.sites.site) else site

    async def command(
        self,
        device_id: str,
        address: str,
        port: int,
        capability: str,
        command: str,
        eid: str,
        params: dict[str, Any],
        timeout: float,
        due: int | None = None,
    ) -> dict[str, Any]:
        site = await self._site_of(device_id, address, port)
        if site is None:
            return await self.local.command(
                device_id, address, port, capability, command, eid, params, timeout, due=due
            )
        args = {
            "device_id": device_id,
            "address": address,
            "port": port,
            "capability": capability,
            "command": command,
            "eid": eid,
            "params": params,
            "timeout": timeout,
        }
        if due is not None:
            args["due"] = due
        result = await self.sites.call(site, "command", args, None, timeout + CALL_MARGIN_S)
        if not isinstance(result, dict):
            raise BoardError(f"site {site} answered no result")
        return result

    async def _by_address(self, method: str, address: str, port: int, data: bytes | None = None, **args: Any):
        site = await self._site_of(None, address, port)
        if site is None:
            call = getattr(self.local, method)
            return await (call(address, port, data=data, **args) if data is not None else call(address, port, **args))
        args = {"address": address, "port": port, **args}
        return await self.sites.call(site, method, args, data, OTHER_TIMEOUT_S)

    async def modules(self, address: str, port: int) -> dict[str, Any]:
        return await self._by_address("modules", address, port)

    async def stats(self, address: str, port: int) -> dict[str, Any]:
        return await self._by_address("stats", address, port)

    async def restart(self, address: str, port: int) -> None:
        await self._by_address("restart", address, port)

    async def put_module(self, address: str, port: int, stem: str, sha256: str, data: bytes) -> dict[str, Any]:
        return await self._by_address("put_module", address, port, data, stem=stem, sha256=sha256)

    async def put_role(self, address: str, port: int, body: dict[str, Any]) -> dict[str, Any]:
        return await self._by_address("put_role", address, port, body=body)
