"""What the services need from the network: the gateway implements this with aiocoap."""

from __future__ import annotations

from typing import Any, Protocol


class BoardLink(Protocol):
    async def capabilities(self, address: str, port: int) -> dict[str, Any]:
        """GET /cap of a board: {"device": id, "caps": [...]} (docs/protocol.md)."""
        ...

    async def command(
        self, device_id: str, address: str, port: int, capability: str, command: str, eid: str,
        params: dict[str, Any], timeout: float,
    ) -> dict[str, Any]:
        """POST /a/CAP/COMMAND; returns the board's `result`. Raises pifleet.errors.BoardError."""
        ...
