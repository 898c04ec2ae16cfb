"""Virtual boards with Wi-Fi for the Wi-Fi tests: the networks around them (inputs.json "wifi", read by
micropython/shims/network.py at every call), the access point they open, and their captive page."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import httpx

from pifleet.sim.board import VirtualBoard
from tests.support.waits import wait_until

PORTAL = re.compile(r"portal: open (http://[0-9.]+:\d+/)")


def set_networks(board: VirtualBoard, networks: dict[str, dict], **more) -> None:
    """The networks around the board from now on: {SSID: {"psk": KEY, "present": bool}} (and join_ms etc.)."""
    board.io.mkdir(parents=True, exist_ok=True)
    path = board.io / "inputs.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data["wifi"] = {"networks": networks, "join_ms": 200, **more}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)  # the board never reads half a file


def access_point(board: VirtualBoard) -> dict:
    """What a phone scanning for networks sees of the board's access point ({} before it ever opened one)."""
    path = board.io / "ap.json"
    for _ in range(50):
        try:
            return json.loads(path.read_text()) if path.exists() else {}
        except ValueError:  # the board is writing it (one short write: read again)
            time.sleep(0.01)
    return json.loads(path.read_text())


def portal_url(board: VirtualBoard, since: int = 0, timeout: float = 30) -> str:
    """The captive page's address, as the board prints it once its access point is open."""
    found = wait_until(
        lambda: PORTAL.search(board.console_text()[since:]),
        timeout=timeout,
        what=f"{board.name} opening its access point",
        explain=lambda: board.console_text()[-3000:],
    )
    return found.group(1)


def submit(url: str, ssid: str, psk: str, master: str = "") -> httpx.Response:
    """A person on the board's access point fills in the page (the form as a browser sends it)."""
    return httpx.post(url, data={"ssid": ssid, "typed": "", "psk": psk, "master": master}, timeout=10)


class NoWifiBoard(VirtualBoard):
    """A board flashed elsewhere with the agent and no Wi-Fi credentials at all (no "wifi" in config.json)."""

    def board_files(self, identity: bool = True) -> dict[str, bytes]:
        files = super().board_files(identity)
        config = json.loads(files["config.json"])
        config.pop("wifi", None)
        files["config.json"] = json.dumps(config).encode()
        return files


def no_wifi_board(name: str, root: Path, master) -> VirtualBoard:
    board = NoWifiBoard(name, root, role="blind", master=master.coap)
    board.provision(identity=False)
    return board


def resolve(board: VirtualBoard, name: str) -> str | None:
    """Ask the board's access point (its DNS on port 53) for name's A record: the address it answers, or None."""
    import socket
    import struct

    question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00\x00\x01\x00\x01"
    query = struct.pack(">HHHHHH", 0x4A17, 0x0100, 1, 0, 0, 0) + question
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(query, (board.ip, 53))
        answer, _ = s.recvfrom(512)
    ident, _flags, _qd, an = struct.unpack(">HHHH", answer[:8])
    if ident != 0x4A17 or not an:
        return None
    return socket.inet_ntoa(answer[-4:])
