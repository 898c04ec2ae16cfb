"""Queries of the module aggregate: uploaded role modules (by content hash) and their compiled builds."""

from __future__ import annotations

from ..boardfs.stems import stem_of
from ..model import ModuleRead

_SELECT = """
select m.id, m.name, m.sha256, m.declared, m.created_at, length(m.source) as size,
       (select count(*) from modules o where o.name = m.name and o.id > m.id) = 0 as latest
from modules m
"""


def _read(row) -> ModuleRead:
    return ModuleRead(
        id=row["id"],
        name=row["name"],
        sha256=row["sha256"],
        size=row["size"],
        declared=row["declared"],
        latest=row["latest"],
        created_at=row["created_at"],
        stem=stem_of(row["name"], row["sha256"]),
    )


async def add(db, name: str, sha256: str, source: str, declared: dict) -> tuple[ModuleRead, bool]:
    """Store a version; returns it and whether it is new (the same content again is the same version)."""
    new_id = await db.fetchval(
        "insert into modules (name, sha256, source, declared) values ($1, $2, $3, $4)"
        " on conflict (name, sha256) do nothing returning id",
        name,
        sha256,
        source,
        declared,
    )
    row = await db.fetchrow(_SELECT + " where m.name = $1 and m.sha256 = $2", name, sha256)
    return _read(row), new_id is not None


async def list_modules(db, name: str | None = None) -> list[ModuleRead]:
    if name is None:
        rows = await db.fetch(_SELECT + " order by m.name, m.id desc")
    else:
        rows = await db.fetch(_SELECT + " where m.name = $1 order by m.id desc", name)
    return [_read(r) for r in rows]


async def source(db, module_id: int) -> str | None:
    return await db.fetchval("select source from modules where id = $1", module_id)


async def build(db, module_id: int, mpy_abi: str, arch: str) -> bytes | None:
    return await db.fetchval(
        "select mpy from module_builds where module_id = $1 and mpy_abi = $2 and arch = $3", module_id, mpy_abi, arch
    )


async def add_build(db, module_id: int, mpy_abi: str, arch: str, mpy_cross: str, mpy: bytes) -> None:
    await db.execute(
        "insert into module_builds (module_id, mpy_abi, arch, mpy_cross, mpy) values ($1, $2, $3, $4, $5)"
        " on conflict do nothing",
        module_id,
        mpy_abi,
        arch,
        mpy_cross,
        mpy,
    )


async def latest(db, names: list[str]) -> dict[str, ModuleRead]:
    """The newest version of each named module that has one."""
    rows = await db.fetch(
        _SELECT + " where m.name = any($1) and not exists"
        " (select 1 from modules o where o.name = m.name and o.id > m.id)",
        names,
    )
    return {r["name"]: _read(r) for r in rows}


async def get(db, module_id: int) -> ModuleRead | None:
    row = await db.fetchrow(_SELECT + " where m.id = $1", module_id)
    return _read(row) if row else None


async def has_version(db, name: str, sha256: str) -> bool:
    return await db.fetchval("select exists (select 1 from modules where name = $1 and sha256 = $2)", name, sha256)
