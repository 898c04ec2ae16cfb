"""Liveness: answers while the master's HTTP side is up. Public (app.py's PUBLIC), no service behind it."""

from __future__ import annotations

from litestar import Controller, get


class HealthController(Controller):
    path = "/api"
    tags = ["health"]

    @get("/health", operation_id="health", summary="Liveness (no login needed)")
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}
