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


def _float_env(name: str) -> float | None:
    value = os.environ.get(name)
    return float(value) if value else None


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
        default_factory=lambda: float(os.environ.get("PIFLEET_COMMAND_TIMEOUT", "10"))
    )
    # Advertise the CoAP endpoint by mDNS/DNS-SD (python-zeroconf), so boards find the master; PIFLEET_MDNS=0 or
    # `pifleet serve --no-mdns` turns it off.
    mdns: bool = msgspec.field(default_factory=lambda: os.environ.get("PIFLEET_MDNS", "1") != "0")
    # new boards are flashed with the OTA layout unless the flash request says otherwise (docs/flashing.md, "OTA")
    flash_ota: bool = msgspec.field(default_factory=lambda: os.environ.get("PIFLEET_FLASH_OTA", "0") == "1")
    # What a freshly flashed board joins and where it finds the master (written into its config.json).
    # The PSK is a secret: never logged, never served by the API.
    wifi_ssid: str = msgspec.field(default_factory=lambda: os.environ.get("PIFLEET_WIFI_SSID", ""))
    wifi_psk: str = msgspec.field(default_factory=lambda: os.environ.get("PIFLEET_WIFI_PSK", ""))
    # The address boards use to reach the CoAP endpoint; default: coap_host, or this Pi's LAN address when
    # coap_host is a wildcard (boards on the LAN cannot use 127.0.0.1).
    advertised_host: str | None = msgspec.field(
        default_factory=lambda: os.environ.get("PIFLEET_ADVERTISED_HOST") or None
    )
    # Where the house is, for sunrise/sunset triggers (PIFLEET_LATITUDE / PIFLEET_LONGITUDE, decimal degrees).
    latitude: float | None = msgspec.field(default_factory=lambda: _float_env("PIFLEET_LATITUDE"))
    longitude: float | None = msgspec.field(default_factory=lambda: _float_env("PIFLEET_LONGITUDE"))
    # Huey worker threads inside the master process.
    workers: int = 4
    # Which site this master is, when several share one database (`pifleet serve --site NAME`, PIFLEET_SITE;
    # docs/operations.md, "Scaling out"): it owns the boards paired through it and runs their jobs. One master
    # alone is the site `default`.
    site: str = msgspec.field(default_factory=lambda: os.environ.get("PIFLEET_SITE") or "default")

    @property
    def location(self) -> tuple[float, float] | None:
        return None if self.latitude is None or self.longitude is None else (self.latitude, self.longitude)

    @property
    def coap_reachable_host(self) -> str:
        """Where a board on this machine reaches the CoAP endpoint (a wildcard bind is reachable on loopback)."""
        return "127.0.0.1" if self.coap_host in ("0.0.0.0", "::", "") else self.coap_host

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"
