"""`pifleet doctor`'s checks: what a master needs from its machine, each answered OK, WARN or FAIL with a fix.

Layer: ops. Runs on the master's machine, beside a running master or without one: it reads the database and the
data directory, tries the CoAP port, starts zeroconf for a moment, looks at the serial ports and the clock. It
changes nothing (the embedded database is started for the check only if no master runs it, and stopped again).
"""

from __future__ import annotations

import contextlib
import errno
import grp
import hashlib
import os
import secrets
import shutil
import socket
import struct
import subprocess
from collections.abc import Callable, Iterator
from glob import glob
from pathlib import Path
from typing import NamedTuple

import psycopg

from ..config import Settings
from ..discovery.advertise import Advertiser
from ..storage import migrations
from . import backup

OK, WARN, FAIL = "OK", "WARN", "FAIL"
DISK_WARN = 2 << 30  # bytes free under which the data directory is getting full
DISK_FAIL = 256 << 20


class Check(NamedTuple):
    name: str
    status: str
    detail: str
    fix: str = ""


def run(settings: Settings) -> list[Check]:
    """Every check, in order; the database ones share one connection."""
    found: list[Check] = []
    with _database(settings) as (conn, problem):
        found.append(problem or _migrations(conn))
        found.append(disk(settings.data_dir))
        found.append(coap_port(settings.coap_host, settings.coap_port))
        found.append(mdns(settings))
        found.append(serial_ports())
        found.append(clock())
        found.append(catalog(conn, settings.data_dir / "firmware") if conn else _skipped("base images"))
    return found


def _skipped(name: str) -> Check:
    return Check(name, WARN, "not checked: no database", "fix the database first")


@contextlib.contextmanager
def _database(settings: Settings) -> Iterator[tuple[psycopg.Connection | None, Check | None]]:
    if not settings.database_url and not (settings.data_dir / "pg" / "PG_VERSION").exists():
        yield (
            None,
            Check(
                "database",
                FAIL,
                f"no embedded database in {settings.data_dir / 'pg'}",
                "start the master once (`pifleet serve --data-dir …`), or set DATABASE_URL to the master's database",
            ),
        )
        return
    with contextlib.ExitStack() as stack:
        conn, problem = None, None
        try:  # only the connection's errors are a check's answer; the checks' own errors are not caught here
            url = stack.enter_context(backup.database(settings.data_dir, settings.database_url))
            conn = stack.enter_context(psycopg.connect(url, autocommit=True))
        except psycopg.Error as e:
            where = "DATABASE_URL's server" if settings.database_url else "the embedded server"
            said = " ".join(str(e).split())  # libpq's message spans lines
            problem = Check("database", FAIL, f"cannot connect to {where}: {said}", _db_fix(settings))
        except Exception as e:  # noqa: BLE001 — the embedded server may fail to start in many ways; say which
            problem = Check("database", FAIL, f"cannot start the embedded server: {e}", _db_fix(settings))
        yield conn, problem


def _db_fix(settings: Settings) -> str:
    if settings.database_url:
        return "check DATABASE_URL (host, user, password, database) and that the server runs"
    return f"read {settings.data_dir / 'pg' / 'log'}; is the data directory on a full or read-only disk?"


def _migrations(conn: psycopg.Connection) -> Check:
    known = max((v for v, _, _ in migrations.available()), default=0)
    try:
        applied = conn.execute("select max(version) from schema_migrations").fetchone()[0] or 0
    except psycopg.errors.UndefinedTable:
        return Check("database", WARN, "connected; no migrations applied yet", "start the master once: it applies them")
    if applied > known:
        return Check(
            "database",
            FAIL,
            f"connected; migrated by a newer pifleet (migration {applied}, this one knows {known})",
            "upgrade pifleet to the version that last ran on this database",
        )
    if applied < known:
        return Check(
            "database",
            WARN,
            f"connected; migrations {applied + 1}-{known} not applied yet",
            "restart the master: it applies them at start-up",
        )
    return Check("database", OK, f"connected; migrations current ({applied})")


def disk(data_dir: Path) -> Check:
    probe = data_dir
    while not probe.exists():
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    detail = f"{usage.free / (1 << 30):.1f} GiB free of {usage.total / (1 << 30):.1f} GiB in {data_dir}"
    fix = "free space (old backups, logs) or move the data directory (--data-dir) to a larger disk"
    if usage.free < DISK_FAIL:
        return Check("disk", FAIL, detail, fix)
    if usage.free < DISK_WARN:
        return Check("disk", WARN, detail, fix)
    return Check("disk", OK, detail)


def _coap_get_core(host: str, port: int, timeout: float = 2.0) -> bytes | None:
    """A plain CoAP GET /.well-known/core (RFC 7252 §3, RFC 6690); the payload, or None without an answer."""
    mid, token = secrets.randbits(16), secrets.token_bytes(4)
    request = struct.pack(">BBH", 0x40 | len(token), 0x01, mid) + token
    request += bytes((0xBB,)) + b".well-known" + bytes((0x04,)) + b"core"  # Uri-Path (11), then delta 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(request, (host, port))
        with contextlib.suppress(OSError):
            while True:
                data, _ = s.recvfrom(2048)
                if len(data) >= 4 + len(token) and data[4 : 4 + len(token)] == token:
                    return data.split(b"\xff", 1)[1] if b"\xff" in data else b""
    return None


def coap_port(host: str, port: int) -> Check:
    name = f"CoAP port udp {host}:{port}"
    reach = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((host, port))
    except OSError as e:
        if e.errno != errno.EADDRINUSE:
            return Check(name, FAIL, f"cannot bind: {e.strerror}", "use --coap-host with an address of this machine")
        core = _coap_get_core(reach, port)
        if core is not None and b"</rd>" in core:
            return Check(name, OK, "in use by a running pifleet master")
        return Check(
            name,
            FAIL,
            "in use by another program" + (" (a CoAP server, not pifleet)" if core is not None else ""),
            f"stop it (`ss -ulpn sport = :{port}` names it) or run the master with --coap-port",
        )
    return Check(name, OK, "free for the master")


def mdns(settings: Settings) -> Check:
    if not settings.mdns:
        return Check("mDNS", OK, "off (PIFLEET_MDNS=0): boards use the address in their config")
    from zeroconf import IPVersion, Zeroconf

    addresses = Advertiser(settings.coap_host, settings.coap_port).addresses
    try:
        Zeroconf(interfaces=addresses, ip_version=IPVersion.V4Only).close()
    except OSError as e:
        return Check(
            "mDNS",
            WARN,
            f"zeroconf cannot start on {', '.join(addresses)}: {e}",
            "boards then need the master's address in their config; serve with --coap-host 0.0.0.0 on a LAN "
            "with multicast",
        )
    if addresses == ["127.0.0.1"]:
        return Check(
            "mDNS",
            WARN,
            "zeroconf starts, but only on loopback: boards on the LAN cannot find the master",
            "serve with --coap-host 0.0.0.0 (or this Pi's LAN address)",
        )
    return Check("mDNS", OK, f"zeroconf starts on {', '.join(addresses)}")


def serial_ports(
    ports: Callable[[], list[str]] = lambda: sorted(glob("/dev/ttyUSB*") + glob("/dev/ttyACM*")),
) -> Check:
    found = ports()
    refused = [p for p in found if not os.access(p, os.R_OK | os.W_OK)]
    if refused:
        return Check(
            "serial ports",
            FAIL,
            f"cannot open {', '.join(refused)}",
            "add the master's user to the dialout group (`sudo usermod -aG dialout USER`), then log in again",
        )
    in_dialout = os.geteuid() == 0 or _in_group("dialout")
    if not found:
        if in_dialout:
            return Check("serial ports", OK, "no USB serial port now; this user may open them (dialout)")
        return Check(
            "serial ports",
            WARN,
            "no USB serial port now, and this user is not in the dialout group",
            "`sudo usermod -aG dialout USER`, then log in again, before flashing a board on USB",
        )
    return Check("serial ports", OK, f"{', '.join(found)} readable and writable")


def _in_group(name: str) -> bool:
    try:
        gid = grp.getgrnam(name).gr_gid
    except KeyError:
        return False
    return gid in os.getgroups() or os.getgid() == gid


def clock() -> Check:
    fix = "enable time synchronisation: `sudo timedatectl set-ntp true` (systemd-timesyncd); jobs fire by this clock"
    if not shutil.which("timedatectl"):
        return Check("clock", WARN, "cannot tell whether the clock is synchronised (no timedatectl)", fix)
    try:
        done = subprocess.run(
            ["timedatectl", "show", "-p", "NTPSynchronized", "--value"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return Check("clock", WARN, f"timedatectl did not answer: {e}", fix)
    value = done.stdout.strip()
    if done.returncode != 0 or value not in ("yes", "no"):
        said = (done.stderr or value).strip().splitlines()
        return Check("clock", WARN, f"timedatectl cannot tell: {said[0] if said else done.returncode}", fix)
    if value == "no":
        return Check("clock", WARN, "not synchronised by NTP", fix)
    return Check("clock", OK, "synchronised by NTP")


def catalog(conn: psycopg.Connection, directory: Path) -> Check:
    """Every catalog row's file is there and unchanged; every chip the master has flashed or adopted (and the
    plain ESP32) has an image."""
    try:
        rows = conn.execute("select chip, version, filename, sha256 from firmware order by chip, added_at").fetchall()
        used = conn.execute(
            "select chip from flash_jobs where coalesce(chip, '') <> ''"
            " union select chip from adoptions where chip <> ''"
        ).fetchall()
    except psycopg.errors.UndefinedTable:
        return Check("base images", WARN, "not checked: the database has no tables yet", "start the master once")
    chips = {"ESP32"} | {chip for (chip,) in used}
    broken = []
    for chip, version, filename, sha256 in rows:
        path = directory / filename
        if not path.is_file():
            broken.append(f"{chip} {version}: {path} missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
            broken.append(f"{chip} {version}: {path} changed on disk")
    if broken:
        return Check(
            "base images",
            FAIL,
            "; ".join(broken),
            "add the image again (`pifleet firmware add FILE` or `pifleet firmware fetch`), or restore a backup",
        )
    have = {chip for chip, *_ in rows}
    missing = sorted(chips - have)
    listed = ", ".join(f"{chip} {version}" for chip, version, *_ in rows) or "none"
    if missing:
        return Check(
            "base images",
            WARN,
            f"no image for {', '.join(missing)} (catalog: {listed})",
            "`pifleet firmware fetch CHIP VERSION` (or `pifleet firmware add FILE`) before flashing such a board",
        )
    return Check("base images", OK, f"{len(rows)} images, one for each chip ({listed})")
