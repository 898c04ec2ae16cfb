"""A board's identity: the one naming scheme and the one maker of its secret, for flashing, adoption and the
virtual boards alike.

Layer: none (stdlib only, no I/O). The device id is `esp-` and the 12 hex digits of the board's MAC (a virtual
board's MAC too: pifleet.sim.flash.board_mac). Boards paired before this scheme keep the ids they have
(`esp32-<last 3 MAC bytes>` from flashing, `vb-NAME` from the simulator): flashing keeps the id of the device
known by a MAC, adoption names the MAC as it always did, and stored ids never change (no migration).
"""

from __future__ import annotations

import secrets

SECRET_BYTES = 32  # the per-device secret OSCORE keys are derived from (docs/security.md)


def device_id_for(mac: str | bytes, *, fresh: bool = False) -> str:
    """The device id of the board with this MAC (aa:bb:cc:dd:ee:ff, its hex digits, or its 6 bytes):
    esp-aabbccddeeff.

    fresh: a new identity for the same board (a factory reset), with a random suffix: esp-aabbccddeeff-1f2e."""
    digits = mac.hex() if isinstance(mac, bytes) else mac.replace(":", "").replace("-", "").lower()
    base = "esp-" + digits
    return f"{base}-{secrets.token_hex(2)}" if fresh else base


def new_secret() -> bytes:
    """A fresh per-device secret: every pairing gets one (a re-flash too: its OSCORE sequence numbers restart)."""
    return secrets.token_bytes(SECRET_BYTES)
