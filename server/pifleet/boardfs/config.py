"""A board's config.json as the agent reads it (docs/agent.md): the one writer of it on the Pi.

Layer: pure apart from save(). The flashing bundle, the virtual board and process targets all get their
config.json from config_json(); the agent rewrites it on the board afterwards (adoption, role switches).
It holds the Wi-Fi key and the per-device secret (a process target's also database DSNs): never log it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

FILENAME = "config.json"
LISTEN_PORT = 5683
LIFETIME_S = 60
ESP32 = "pifleet.esp32"  # endpoint types (et, as in a CoRE Resource Directory registration)
PROCESS = "pifleet.process"


class Identity(NamedTuple):
    device_id: str
    name: str
    role: str
    secret: bytes  # 32 bytes, written as hex
    oscore_id: bytes | None = None  # the board's OSCORE sender id (docs/security.md); None: no OSCORE


def config_json(
    identity: Identity | None,
    role: str,
    caps: dict,
    *,
    master: tuple[str, int],
    wifi: tuple[str, str] | dict | None,
    lifetime: int = LIFETIME_S,
    listen_port: int = LISTEN_PORT,
    et: str = ESP32,
    mdns: bool = True,
    modules: dict[str, str] | None = None,
) -> dict:
    """config.json's content. Without an identity the board waits for adoption.

    wifi: (ssid, psk), the fleet's networks {"nets": [[ssid, psk], …], "fallback_s": N}, or None for a target
    already on its network (a process). mdns=False: the master's address is given, the agent searches for no other.
    modules: the file stem of each capability's version."""
    config: dict = {"role": role, "et": et, "master": {"host": master[0], "port": master[1]}}
    if not mdns:
        config["master"]["mdns"] = False
    if isinstance(wifi, dict):  # {"nets": [[ssid, psk], …], "fallback_s": N}: the fleet's networks (pifleet/wifi.py)
        config["wifi"] = wifi
    elif wifi is not None:
        config["wifi"] = {"ssid": wifi[0], "psk": wifi[1]}
    config |= {"listen_port": listen_port, "lifetime": lifetime, "caps": caps}
    if identity is not None:
        config |= {"device_id": identity.device_id, "name": identity.name, "secret": identity.secret.hex()}
        if identity.oscore_id is not None:
            config["oscore_id"] = identity.oscore_id.hex()
    if modules is not None:
        config["modules"] = modules
    return config


def encode(config: dict) -> bytes:
    """The file's bytes."""
    return json.dumps(config, indent=1).encode()


def identity_of(config: dict) -> Identity | None:
    """The identity a config.json holds (adoption wrote it there); None before adoption."""
    if not config.get("device_id"):
        return None
    oscore_id = config.get("oscore_id")
    return Identity(
        config["device_id"],
        config.get("name", ""),
        config.get("role", ""),
        bytes.fromhex(config.get("secret", "")),
        bytes.fromhex(oscore_id) if oscore_id else None,
    )


def save(directory: Path, config: dict) -> None:
    """Write DIRECTORY/config.json atomically and readable by this user only (a process target's working
    directory is its filesystem; its config holds database passwords)."""
    tmp = directory / (FILENAME + ".new")
    tmp.unlink(missing_ok=True)
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
        f.write(encode(config))
    os.replace(tmp, directory / FILENAME)
