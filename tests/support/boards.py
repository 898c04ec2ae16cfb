"""Virtual boards paired with a master the way real ones are: flashed by it, with real esptool over the
board's pty, from the tests' ESP32 image (pifleet.sim.firmware). The board then holds its identity, a secret
and an OSCORE id, and the master holds the same keys."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import traceback
from functools import cache

from pifleet.sim.board import VirtualBoard


@cache
def _image() -> bytes:
    from pifleet.sim.firmware import build_image

    return build_image("esp32", "v1.24.1")


def firmware_id(master) -> int:
    """The tests' image in this master's catalog (added once per master)."""
    fw = getattr(master, "_virtual_firmware", None)
    if fw is None:
        r = master.post("/api/firmware", content=_image(), headers={"content-type": "application/octet-stream"})
        assert r.status_code in (200, 201), r.text
        fw = master._virtual_firmware = r.json()["id"]
    return fw


def flash(master, board: VirtualBoard, name: str, role: str = "blind", lifetime_s: int | None = None) -> dict:
    """Flash a powered board through the master's API; returns the finished flash job."""
    from tests.support.waits import wait_until

    fw = firmware_id(master)
    wait_until(
        lambda: any(b["port"] == board.serial_port for b in master.get("/api/boards")),
        timeout=10,
        what=f"{board.name} on the master's USB list",
        explain=master.log_tail,
    )
    body = {"port": board.serial_port, "name": name, "role": role, "firmware": fw}
    if lifetime_s is not None:
        body["lifetime_s"] = lifetime_s
    r = master.post("/api/flash", json=body)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]

    def explain() -> str:  # a flash that hangs in CI must be understood from the log alone
        try:
            job = master.get(f"/api/flash/{job_id}")
        except Exception as e:  # noqa: BLE001 - the master may be the thing that hangs
            job = repr(e)
        if master.proc is not None and master.proc.poll() is None:
            before = len(master.log_text())
            master.proc.send_signal(signal.SIGUSR1)  # the master writes its threads' stacks to its log
            with contextlib.suppress(AssertionError):  # explain anyway with what there is
                wait_until(
                    lambda: "most recent call first" in master.log_text()[before:],  # faulthandler's header
                    timeout=5,
                    what="the master's thread stacks in its log",
                )
        tail = "\n".join(master.log_text().splitlines()[-150:])
        chips = "".join(
            f"thread {t.name}:\n" + "".join(traceback.format_stack(sys._current_frames()[t.ident]))
            for t in threading.enumerate()
            if t.name.startswith("chip-") and t.ident
        )
        return (
            f"flash job: {job}\nmaster log (last 150 lines):\n{tail}\n"
            f"virtual chips (this process):\n{chips or 'none alive'}\n"
            f"{board.name} console (last 2000 chars):\n{board.console_text()[-2000:]}"
        )

    job = wait_until(
        lambda: (j := master.get(f"/api/flash/{job_id}"))["state"] in ("done", "failed") and j,
        timeout=60,
        what=f"flashing {name}",
        explain=explain,
    )
    assert job["state"] == "done", job["error"]
    board.device_id, board.role = job["device_id"], role
    return job
