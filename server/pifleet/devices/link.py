"""What the services need from the network: the gateway implements this with aiocoap."""

from __future__ import annotations

from typing import Any, Protocol


class BoardLink(Protocol):
    def bind(self, device_id: str, address: str, port: int) -> None:
        """The board is at this address now (its OSCORE context goes with what is sent there)."""
        ...

    async def capabilities(self, address: str, port: int) -> dict[str, Any]:
        """GET /cap of a board: {"device": id, "caps": [...]} (docs/protocol.md)."""
        ...

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
        """POST /a/CAP/COMMAND; returns the board's `result`. Raises pifleet.errors.BoardError. `due`: the instant
        (Unix ms, the master's clock) the board acts at, for a role/group run's commands (docs/protocol.md)."""
        ...

    async def modules(self, address: str, port: int) -> dict[str, Any]:
        """GET /m: {"modules": {stem: size}, "free": bytes}."""
        ...

    async def stats(self, address: str, port: int) -> dict[str, Any]:
        """GET /stats."""
        ...

    async def restart(self, address: str, port: int) -> None:
        """POST /restart: the board sets its outputs safe and resets (it registers again when it is back)."""
        ...

    async def put_module(self, address: str, port: int, stem: str, sha256: str, data: bytes) -> dict[str, Any]:
        """PUT /m/STEM?sha=… block-wise; BoardError (field "sha", "size" …) when the board refuses it."""
        ...

    async def put_role(self, address: str, port: int, body: dict[str, Any]) -> dict[str, Any]:
        """PUT /role; the board's /cap description once it runs the role, BoardError when it went back."""
        ...

    async def put_plan(self, address: str, port: int, body: dict[str, Any]) -> dict[str, Any]:
        """PUT /plan (jobs/autonomy.py): the board's timed runs while the master is away; the runs it did."""
        ...


class BoardKeys(Protocol):
    """The OSCORE contexts of paired boards: the gateway keeps them."""

    def pair(self, device_id: str, oscore_id: bytes, secret: bytes, address: str | None, port: int | None) -> None:
        """Know a board's keys (flashed, adopted, or at start); replaces what was known before."""
        ...

    def unpair(self, device_id: str) -> None:
        """Forget a board's keys: what it sends is refused from now on."""
        ...


class Paired(Protocol):
    """Called with a device id once a board got an identity (flashing, adoption): its keys become known."""

    async def __call__(self, device_id: str) -> None: ...


class Described(Protocol):
    """Called with a device id and its /cap description after each registration (the role sync hooks in)."""

    async def __call__(self, device_id: str, described: dict[str, Any]) -> None: ...
