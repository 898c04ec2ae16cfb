"""Settings of one master: ports, data directory, database. Pure data; nothing here starts anything."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec


def default_data_dir() -> Path:
    """Per-user data directory (XDG): ~/.local/share/pifleet unless PIFLEET_DATA_DIR says otherwise."""
    if env := os.environ.get("PIFLEET_DATA_DIR"):
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pifleet"


class Settings(msgspec.Struct, kw_only=True):
    data_dir: Path = msgspec.field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    port: int = 8080
    # A Pi serving real boards sets coap_host to 0.0.0.0; the default keeps everything on loopback.
    coap_host: str = "127.0.0.1"
    coap_port: int = 5683
    # None: start the embedded PostgreSQL in data_dir/pg; otherwise a libpq URI of a system server.
    database_url: str | None = msgspec.field(default_factory=lambda: os.environ.get("DATABASE_URL") or None)
    # How long the master waits for a board's answer beyond the command's own duration.
    command_timeout_s: float = msgspec.field(
        default_factory=lambda: float(os.environ.get("PIFLEET_COMMAND_TIMEOUT", "10")))
    # Huey worker threads inside the master process.
    workers: int = 4

    @property
    def coap_reachable_host(self) -> str:
        """Where a board on this machine reaches the CoAP endpoint (a wildcard bind is reachable on loopback)."""
        return "127.0.0.1" if self.coap_host in ("0.0.0.0", "::", "") else self.coap_host

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"
