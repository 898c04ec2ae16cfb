"""Role modules as people upload them: checked by mpy-cross (a syntax error comes back with the compiler's
message and line; nothing is stored), checked for what a capability module must declare, versioned by the
content's SHA-256, and compiled per .mpy ABI on demand (cached in PostgreSQL).

The capability modules shipped in capabilities/ are versions like any other: stored the first time a role
needs one, and a master upgrade that ships a changed one stores that as the newest version.
Pushing versions to boards is modules/sync.py; rolling them out, modules/rollouts.py.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import logging

import asyncpg

from .. import resources
from ..boardfs import mpy, stems
from ..errors import InvalidError
from ..events import EventHub
from ..model import ModuleRead, ModuleUpload
from ..storage import modules as q

log = logging.getLogger(__name__)

# .mpy ABI → the oldest MicroPython release that emits it (DESIGN.md, "Facts"); mpy-cross is chosen by release
ABI_RELEASE = {"6.3": "1.23.0", "6.2": "1.22.0", "6.1": "1.20.0", "6": "1.19.0", "5": "1.12.0"}
CHECK_ABI = "6.3"  # uploads are compiled once for the current ABI to check them
CHECK_ARCH = "xtensawin"  # ... and, when they hold native code, for the ESP32's native emitter
# sys.implementation._mpy >> 10: the board's native architecture, as mpy-cross -march names it
ARCHS = {
    1: "x86",
    2: "x64",
    3: "armv6",
    4: "armv6m",
    5: "armv7m",
    6: "armv7em",
    7: "armv7emsp",
    8: "armv7emdp",
    9: "xtensa",
    10: "xtensawin",
    11: "rv32imc",
}
_NATIVE = {"native", "viper", "asm_thumb", "asm_xtensa"}


def mpy_abi(implementation_mpy: int) -> str:
    """The ABI a board reports as sys.implementation._mpy: low byte the version, bits 8–9 the sub-version."""
    version, sub = implementation_mpy & 0xFF, (implementation_mpy >> 8) & 3
    return f"{version}.{sub}" if version >= 6 and sub else str(version)


def mpy_arch(implementation_mpy: int) -> str:
    """The native architecture a board reports in sys.implementation._mpy (bits 10 and up); "" if none."""
    return ARCHS.get(implementation_mpy >> 10, "")


def has_native_code(tree: ast.Module) -> bool:
    """@micropython.native / viper / asm_* anywhere: the .mpy then holds machine code for one architecture."""
    for node in ast.walk(tree):
        for decorator in getattr(node, "decorator_list", ()):
            if isinstance(decorator, ast.Attribute) and decorator.attr in _NATIVE:
                return True
    return False


def declarations(name: str, source: str, tree: ast.Module | None = None) -> dict:
    """What the module declares, read without running it; refuses a module that is not a capability module.
    `tree`: the source already parsed, if it was."""
    filename = f"{name}.py"
    try:
        tree = tree or ast.parse(source, filename=filename)
    except SyntaxError as exc:  # MicroPython accepted it (mpy-cross ran first), CPython does not: still refuse
        raise mpy.CompileError(f"{filename} line {exc.lineno}: {exc.msg}", field="source", line=exc.lineno)
    values, functions = {}, set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                values.setdefault(node.targets[0].id, None)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            functions.add(node.name)
    if values.get("NAME") != name:
        raise InvalidError(
            f"{filename} must declare NAME = {name!r} (the capability's name is its file's name)", field="source"
        )
    if not isinstance(values.get("VERSION"), str):
        raise InvalidError(f"{filename} must declare VERSION as a string", field="source")
    commands = values.get("COMMANDS")
    if not isinstance(commands, dict) or not all(isinstance(k, str) for k in commands):
        raise InvalidError(
            f"{filename} must declare COMMANDS, a dict literal of command → parameter schema", field="source"
        )
    if "setup" not in functions:
        raise InvalidError(f"{filename} must define setup(cfg)", field="source")
    config = values.get("CONFIG")
    if "CONFIG" in values and not (isinstance(config, dict) and all(isinstance(v, dict) for v in config.values())):
        raise InvalidError(f"{filename}: CONFIG must be a dict literal of key → schema", field="source")
    telemetry = values.get("TELEMETRY")
    telemetry = telemetry if _schemas(telemetry) else {}
    state = values.get("STATE")
    if "STATE" in values and not _schemas(state):
        raise InvalidError(f"{filename}: STATE must be a dict literal of value → schema", field="source")
    return {
        "name": name,
        "version": values["VERSION"],
        "commands": sorted(commands),
        "schema": commands,
        "config": config,
        "native": has_native_code(tree),
        "telemetry": sorted(telemetry),
        # what its live state holds (devices/state.py): its STATE, or else its telemetry, which is then its state
        "state": state or telemetry,
        "units": {
            key: schema["unit"]
            for key, schema in {**telemetry, **(state or {})}.items()
            if isinstance(schema.get("unit"), str) and not schema["unit"].startswith("(")  # "(CONFIG unit)"
        },
    }


def _schemas(value: object) -> bool:
    """A dict literal of name → schema (TELEMETRY, STATE)."""
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, dict) for k, v in value.items())


_BUILDS_KEPT = 16  # compiled modules kept in memory: a rollout pushes the same build to every board


class ModuleService:
    def __init__(self, pool: asyncpg.Pool, hub: EventHub) -> None:
        self.pool = pool
        self.hub = hub
        # (module id, ABI, arch) -> .mpy: a version's build never changes (a new source is a new module id)
        self._builds: dict[tuple[int, str, str], bytes] = {}

    async def upload(self, upload: ModuleUpload) -> tuple[ModuleRead, bool]:
        name = upload.filename[:-3]
        try:
            tree = ast.parse(upload.source, filename=upload.filename)
        except SyntaxError:
            tree = None  # mpy-cross says where, next
        # the walk over every node only when a native decorator's name is in the text at all (10 ms of a 20 KB
        # module's upload, before its rollout can start)
        native = tree is not None and any(word in upload.source for word in _NATIVE) and has_native_code(tree)
        arch = CHECK_ARCH if native else ""
        mpy, compiler = await asyncio.to_thread(self._compile, name, upload.source, CHECK_ABI, arch)
        declared = declarations(name, upload.source, tree)
        sha = hashlib.sha256(upload.source.encode()).hexdigest()
        async with self.pool.acquire() as conn, conn.transaction():
            module, new = await q.add(conn, name, sha, upload.source, declared)
            await q.add_build(conn, module.id, CHECK_ABI, arch, compiler, mpy)
        self.hub.publish("modules")
        return module, new

    async def list(self, name: str | None = None) -> list[ModuleRead]:
        """Every stored version (of one module, or of all), newest first."""
        return await q.list_modules(self.pool, name)

    async def ensure(self, names: list[str]) -> dict[str, ModuleRead]:
        """The newest version of each module; a shipped capability module is stored on first use."""
        found = await q.latest(self.pool, names)
        for name in names:
            if name in found:
                continue
            path = resources.capabilities() / f"{name}.py"
            if not path.exists():
                raise InvalidError(f"there is no module {name!r}: upload {name}.py first", field=f"modules.{name}")
            found[name], _ = await self.upload(ModuleUpload(filename=path.name, source=path.read_text()))
        return found

    async def refresh_shipped(self) -> None:
        """After a master upgrade: a shipped module that changed becomes the newest version of that module
        (only for modules already in use; the others are stored when first needed)."""
        stored = {m.name for m in await q.list_modules(self.pool)}
        for path in sorted(resources.capabilities().glob("[a-z]*.py")):
            if path.stem not in stored:
                continue
            source = path.read_text()
            if not await q.has_version(self.pool, path.stem, stems.module_sha(source)):
                module, _ = await self.upload(ModuleUpload(filename=path.name, source=source))
                log.info("stored the shipped %s as its newest version (%s)", path.name, module.stem)

    async def build(self, module_id: int, abi: str, arch: str = "") -> bytes:
        """The module compiled for a board's ABI (and native architecture, for native code), from the cache or
        compiled now."""
        key = (module_id, abi, arch)
        kept = self._builds.get(key)
        if kept is not None:
            return kept
        cached = await q.build(self.pool, module_id, abi, arch)
        if cached is None:
            module = await q.get(self.pool, module_id)
            source = await q.source(self.pool, module_id)
            if module is None or source is None:
                raise InvalidError(f"no module {module_id}", field="module")
            cached, compiler = await asyncio.to_thread(self._compile, module.name, source, abi, arch)
            await q.add_build(self.pool, module_id, abi, arch, compiler, cached)
        self._builds[key] = cached
        while len(self._builds) > _BUILDS_KEPT:
            del self._builds[next(iter(self._builds))]  # the oldest kept
        return cached

    @staticmethod
    def _compile(name: str, source: str, abi: str, arch: str = "") -> tuple[bytes, str]:
        release = ABI_RELEASE.get(abi)
        if release is None:
            raise InvalidError(f"no compiler for .mpy ABI {abi}", field="abi")
        binary = mpy.mpy_cross_for(release)
        return mpy.compile_mpy(binary, source.encode(), f"caps/{name}.py", arch), binary.parent.name
