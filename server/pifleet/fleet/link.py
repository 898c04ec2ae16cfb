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
    ) -> dict[str, Any]:
        """POST /a/CAP/COMMAND; returns the board's `result`. Raises pifleet.errors.BoardError."""
        ...

    async def modules(self, address: str, port: int) -> dict[str, Any]:
        """GET /m: {"modules": {stem: size}, "free": bytes}."""
        ...

    async def stats(self, address: str, port: int) -> dict[str, Any]:
        """GET /stats."""
        ...

    async def put_module(self, address: str, port: int, stem: str, sha256: str, data: bytes) -> dict[str, Any]:
        """PUT /m/STEM?sha=… block-wise; BoardError (field "sha", "size" …) when the board refuses it."""
        ...

    async def put_role(self, address: str, port: int, body: dict[str, Any]) -> dict[str, Any]:
        """PUT /role; the board's /cap description once it runs the role, BoardError when it went back."""
        ...
