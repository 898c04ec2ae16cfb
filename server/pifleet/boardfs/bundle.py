"""A board's provisioning bundle: every file of its filesystem, and the littlefs image for its `vfs` partition.

Layer: helper, pure apart from reading the shipped sources and running mpy-cross. What goes in (docs/agent.md
"Files on a board"): the agent compiled to `.mpy` by the mpy-cross matching the base image's MicroPython
version, the role's capability modules as `.mpy` under caps/, `boot.py`/`main.py` as source (MicroPython runs
only those two by name), `mpyset_swap.py` as source (boot.py's pick of the set for the running .mpy version; agent/_mpy
records the set's: agent_set() builds the set for another version, pushed before an update of MicroPython), and
config.json (pifleet.boardfs.config). The bundle holds the Wi-Fi key and the
secret: never log its files or config.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from .. import resources
from ..errors import InvalidError
from . import layout
from .config import LIFETIME_S, LISTEN_PORT, Identity, config_json, encode
from .mpy import compile_mpy, mpy_cross_for, mpy_key
from .stems import module_stem

# The source name an agent module's .mpy carries (mpy-cross -s), shown in its tracebacks: its file on the board, the
# very string the import makes its __file__, so each module loaded interns one name, not two (the .py and the
# .mpy path: 16-20 bytes each, and with boots.py and plan.py loaded at every start the pool had no slot left for a
# push's, which grew it by 4.6 KB; docs/agent.md, "Heap")
AGENT_NAME = "{}.mpy"
# The agent's modules a board loads for one request and forgets (docs/agent.md, "What a load costs"), the most often
# loaded last: written last into the image, each is found with fewer flash reads (`stat()` of agent/admin.mpy 398 ->
# 146 reads; executions, at every command with an effect, 314 -> 136). The board does not write agent/ itself, but
# for a .mpy set's swap.
LOADED_PER_USE = tuple(
    f"agent/{AGENT_NAME.format(name)}"
    for name in ("modules", "replace", "role", "caps", "register", "boots", "plan", "admin", "executions")
)

__all__ = ["Bundle", "Identity", "agent_set", "board_files", "build", "vfs_partition"]


class Bundle(NamedTuple):
    offset: int  # of the vfs partition
    image: bytes  # the littlefs image, exactly the partition's size
    files: dict[str, bytes]  # what the image holds (secrets inside: do not log)
    mpy_cross: str  # the mpy-cross used (version line)


def board_files(
    identity: Identity | None,
    *,
    version: str,
    master: tuple[str, int],
    wifi: tuple[str, str] | dict,
    caps: dict,
    role: str | None = None,
    lifetime: int = LIFETIME_S,
    listen_port: int = LISTEN_PORT,
    compiled: bool = True,
    sources: dict[str, str] | None = None,
) -> tuple[dict[str, bytes], str]:
    """Every file of the board's filesystem, and the mpy-cross version line used ("source" if not compiled).

    caps: the role's capability configs. compiled=False keeps the modules as source: for an agent that runs
    under CPython (a process target, or a virtual board on a machine without the MicroPython unix port).
    `sources` are the role's module versions ({name: source}, as the master stores them); without them the
    shipped capabilities/ files are used."""
    role = role or (identity.role if identity else "")
    binary = mpy_cross_for(version) if compiled else None
    agent, shipped = resources.agent(), resources.capabilities()

    def module(path: Path, name: str, source: bytes | None = None) -> tuple[str, bytes]:
        source = path.read_bytes() if source is None else source
        if binary is None:
            return f"{name}.py", source
        # the agent without line-number tables (-O3: its heap is the board's tightest budget), and named in its
        # tracebacks by its file on the board (AGENT_NAME); role modules keep both, for the authors who read theirs
        if name.startswith("agent/"):
            return f"{name}.mpy", compile_mpy(binary, source, AGENT_NAME.format(name), optimize=3)
        return f"{name}.mpy", compile_mpy(binary, source, f"{name}.py")

    files: dict[str, bytes] = {
        "boot.py": (agent / "boot.py").read_bytes(),
        "main.py": (agent / "main.py").read_bytes(),
        "mpyset_swap.py": (agent / "mpyset_swap.py").read_bytes(),
        "caps/__init__.py": b"",
    }
    for path in sorted((agent / "agent").glob("*.py")):
        files.update([module(path, f"agent/{path.stem}")])
    if binary is not None:
        files[MPY_RECORD] = b"%d" % mpy_key(version)
    stems = {}
    for cap in caps:
        path = shipped / f"{cap}.py"
        if sources is not None and cap in sources:
            text = sources[cap]
        elif path.exists():
            text = path.read_text()
        else:
            raise InvalidError(f"role {role!r} needs capability {cap!r}, which has no module", field="role")
        stems[cap] = module_stem(cap, text)
        files.update([module(path, f"caps/{stems[cap]}", text.encode())])
    config = config_json(
        identity, role, caps, master=master, wifi=wifi, lifetime=lifetime, listen_port=listen_port, modules=stems
    )
    files["config.json"] = encode(config)
    return files, binary.parent.name if binary else "source"


MPY_RECORD = "agent/_mpy"  # the .mpy version (sys.implementation._mpy & 1023) the set beside it was built for
ROOT_SOURCES = ("boot.py", "mpyset_swap.py")  # what picks the set at a start: pushed with a set (older boards)


def agent_set(version: str, modules: dict[str, tuple[str, str]]) -> dict[str, bytes]:
    """The agent and the role's modules built for MicroPython `version`, as they lie in a set (agent/….mpy,
    agent/_mpy, caps/__init__.py, caps/STEM.mpy); pushed into mpy/KEY/ on a board before it switches to an image of
    another .mpy version (docs/flashing.md, "Different .mpy versions").

    modules: {stem: (source, march)}: the role's module versions the board holds (caps/STEM), march the board's
    native architecture for a module with native code (mpy-cross -march), else ""."""
    binary = mpy_cross_for(version)
    files = {"caps/__init__.py": b"", MPY_RECORD: b"%d" % mpy_key(version)}
    for path in sorted((resources.agent() / "agent").glob("*.py")):
        name = f"agent/{path.stem}"
        files[f"{name}.mpy"] = compile_mpy(binary, path.read_bytes(), AGENT_NAME.format(name), optimize=3)
    for stem, (source, march) in sorted(modules.items()):
        files[f"caps/{stem}.mpy"] = compile_mpy(binary, source.encode(), f"caps/{stem}.py", march)
    return files


def vfs_partition(image: bytes, image_offset: int, flash_size: int | None) -> layout.Partition:
    """The vfs partition of the base image's table, or MicroPython's default position for the flash size."""
    flash_size = flash_size or layout.DEFAULT_FLASH_SIZE
    at = layout.TABLE_OFFSET - image_offset
    try:
        parts = layout.parse_partition_table(image[at : at + layout.TABLE_SIZE])
    except layout.LayoutError:
        parts = []
    vfs = layout.find_vfs(parts) if parts else None
    if vfs is None and parts and max(p.end for p in parts) < flash_size:
        # MicroPython's OTA tables have none: the port registers one from the last partition's end (main.c)
        end = max(p.end for p in parts)
        vfs = layout.Partition("vfs", layout.DATA, 0x81, end, flash_size - end)
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
    wifi: tuple[str, str] | dict,
    caps: dict,
    sources: dict[str, str] | None = None,
    lifetime: int = LIFETIME_S,
) -> Bundle:
    """The littlefs image for the board's vfs partition, and where it goes."""
    vfs = vfs_partition(image, image_offset, flash_size)
    files, line = board_files(
        identity, version=version, master=master, wifi=wifi, caps=caps, sources=sources, lifetime=lifetime
    )
    try:
        data = layout.build_littlefs(files, vfs.size, last=LOADED_PER_USE)
    except layout.LayoutError as e:
        raise InvalidError(f"the bundle does not fit the vfs partition: {e}", field="firmware") from None
    return Bundle(vfs.offset, data, files, line)
