"""A board check anyone with a real board can run: flash it through a running master, then see it work.

    python tools/hil/board_check.py PORT [--firmware FILE] [--name NAME] [--url URL] [--token TOKEN]

Talks only to the master's REST API (like the CLI: `--url`, default PIFLEET_URL or http://127.0.0.1:8080, and
`--token`, default PIFLEET_TOKEN — an API token of scope `write`, `pifleet token create`). With the board on PORT
(a USB port on the Pi, or a virtual board's serial port), it:

1. flashes it as a blind board (`--firmware FILE` adds that image to the catalog first; without it the master
   takes the newest image it has for the chip) and waits until the board has registered and is in sync;
2. drives one output command: `blind.move` up for 0.2 s (a motor on GPIO 25/26 moves briefly);
3. pushes a module: a role `board-check` with the board's modules plus a small check module, assigned to the
   board (no reflash), waits until it is in sync and runs the module's command; then gives the board its role
   back and waits until it is in sync again;
4. reads the board's `/stats` through the master (heap used and free as the board reports them, uptime);
5. restarts it (`POST /api/devices/NAME/restart`: outputs safe, machine.reset()) and waits until it answers
   again with a fresh uptime and says why it started (`reset_cause`, "soft" after a software reset).

Last line, name=value: ok, flash_s, register_s, command_ms, push_s, mem_alloc_b, mem_free_b, uptime_s, restart_s,
reset_cause
(`ok=0 failed=STEP` and a reason on stderr when a step fails; exit status 1).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import httpx

CHECK_MODULE = '''"""board-check: a small module pushed at run time to show that module pushes work on this board."""
NAME = "boardcheck"
VERSION = "1"
COMMANDS = {"ping": {}}
CONFIG = {}


class Check:
    async def ping(self):
        return {"pong": True}


def setup(cfg):
    return Check()
'''


class CheckFailed(Exception):
    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step


class Master:
    def __init__(self, url: str, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=60)

    def call(self, step: str, method: str, path: str, **kw):
        r = self.http.request(method, path, **kw)
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise CheckFailed(step, f"{method} {path}: {r.status_code} {detail}")
        return r.json() if r.content else None

    def wait(self, step: str, what: str, probe, timeout: float, interval: float = 0.2):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = probe()
            if value:
                return value
            time.sleep(interval)
        raise CheckFailed(step, f"timed out after {timeout:.0f} s waiting for {what}")

    def device(self, name: str) -> dict | None:
        return next((d for d in self.call("register", "GET", "/api/devices") if d["name"] == name), None)

    def in_sync(
        self, step: str, name: str, timeout: float, role: str | None = None, has: str = "", lacks: str = ""
    ) -> dict:
        """The board online and in sync (with `role`, offering capability `has` and not `lacks`, when given)."""

        def probe():
            device = self.device(name)
            if not device or not device["online"] or (role and device["role"] != role):
                return None
            if device["sync"] and device["sync"]["state"] == "failed":
                raise CheckFailed(step, f"sync failed: {device['sync']['reason']}")
            offers = {c["name"] for c in device["capabilities"]}
            wanted = (not has or has in offers) and lacks not in offers
            return device if (device["sync"] or {}).get("state") == "in_sync" and wanted else None

        what = f"{name} online and in sync" + (f" with role {role}" if role else "")
        return self.wait(step, what, probe, timeout)

    def run(self, step: str, name: str, device: str, capability: str, command: str, params: dict) -> dict:
        job = {
            "name": name,
            "target": {"device": device},
            "trigger": {"type": "manual"},
            "action": {"capability": capability, "command": command, "params": params},
        }
        self.call(step, "PUT", f"/api/jobs/{name}", json=job)
        execution = self.call(step, "POST", f"/api/jobs/{name}/run")
        done = self.wait(
            step,
            f"{capability}.{command} to finish",
            lambda: (
                (e := self.call(step, "GET", f"/api/executions/{execution['id']}"))["state"]
                in ("succeeded", "failed", "skipped", "missed", "cancelled")
                and e
            ),
            timeout=60,
        )
        self.call(step, "DELETE", f"/api/jobs/{name}")
        if done["state"] != "succeeded":
            raise CheckFailed(step, f"{capability}.{command} {done['state']}: {done.get('error')}")
        return done


def check(master: Master, port: str, name: str, firmware: Path | None, timeout: float) -> dict[str, object]:
    figures: dict[str, object] = {}
    flash = {"port": port, "name": name, "role": "blind"}
    if firmware is not None:
        entry = master.call(
            "firmware",
            "POST",
            "/api/firmware",
            content=firmware.read_bytes(),
            headers={"content-type": "application/octet-stream"},
        )
        flash["firmware"] = entry["id"]
    master.wait(
        "usb",
        f"{port} on the master's USB list",
        lambda: any(b["port"] == port for b in master.call("usb", "GET", "/api/boards")),
        timeout=10,
    )

    started = time.monotonic()
    job = master.call("flash", "POST", "/api/flash", json=flash)
    job = master.wait(
        "flash",
        "the flash job",
        lambda: (j := master.call("flash", "GET", f"/api/flash/{job['id']}"))["state"] in ("done", "failed") and j,
        timeout=timeout,
    )
    if job["state"] != "done":
        raise CheckFailed("flash", job.get("error") or "failed")
    flashed = time.monotonic()
    figures["flash_s"] = round(flashed - started, 1)
    device = master.in_sync("register", name, timeout)
    figures["register_s"] = round(time.monotonic() - flashed, 1)

    started = time.monotonic()
    master.run("command", "board-check-move", name, "blind", "move", {"direction": "up", "seconds": 0.2})
    figures["command_ms"] = round((time.monotonic() - started) * 1000)

    own_role = device["role"]
    role = master.call("push", "GET", f"/api/roles/{own_role}")
    master.call("push", "POST", "/api/modules", json={"filename": "boardcheck.py", "source": CHECK_MODULE})
    modules = {**role["modules"], "boardcheck": {}}
    started = time.monotonic()
    master.call(
        "push", "PUT", "/api/roles/board-check", json={"description": "tools/hil/board_check.py", "modules": modules}
    )
    master.call("push", "POST", "/api/roles/board-check/assign", json={"devices": [name]})
    master.in_sync("push", name, timeout, role="board-check", has="boardcheck")
    figures["push_s"] = round(time.monotonic() - started, 1)
    master.run("push", "board-check-ping", name, "boardcheck", "ping", {})
    master.call("push", "POST", f"/api/roles/{own_role}/assign", json={"devices": [name]})
    master.in_sync("push", name, timeout, role=own_role, lacks="boardcheck")
    master.call("push", "DELETE", "/api/roles/board-check")

    stats = master.call("stats", "GET", f"/api/devices/{name}/stats")
    figures["mem_alloc_b"] = stats.get("mem_alloc")
    figures["mem_free_b"] = stats.get("mem_free")
    figures["uptime_s"] = round(stats.get("uptime_ms", 0) / 1000, 1)

    started = time.monotonic()
    master.call("restart", "POST", f"/api/devices/{name}/restart")

    def back():
        try:  # while it boots the master cannot reach it: the stats request fails, and is asked again
            again = master.call("restart", "GET", f"/api/devices/{name}/stats")
        except CheckFailed:
            return None
        return again if again.get("uptime_ms", 0) < stats.get("uptime_ms", 0) else None

    again = master.wait("restart", f"{name} back after its restart", back, timeout=timeout)
    figures["restart_s"] = round(time.monotonic() - started, 1)
    figures["reset_cause"] = again.get("reset_cause", "unknown")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", help="the board's serial port (e.g. /dev/ttyUSB0, or a virtual board's pty)")
    parser.add_argument("--firmware", type=Path, help="a MicroPython .bin to add to the catalog and flash")
    parser.add_argument("--name", default="board-check", help="the name the board gets (default board-check)")
    parser.add_argument("--url", default=os.environ.get("PIFLEET_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--token", default=os.environ.get("PIFLEET_TOKEN"))
    parser.add_argument("--timeout", type=float, default=180, help="seconds for flashing and each sync")
    args = parser.parse_args()
    master = Master(args.url, args.token)
    try:
        figures = check(master, args.port, args.name, args.firmware, args.timeout)
    except (CheckFailed, httpx.HTTPError) as e:
        print(f"board_check: {e}", file=sys.stderr)
        print(f"ok=0 failed={getattr(e, 'step', 'http')}")
        return 1
    print("ok=1 " + " ".join(f"{k}={v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
