"""Queries of the role aggregate: roles as data, boards' role assignments and sync state, module rollouts."""

from __future__ import annotations

from typing import Any

from ..model import RoleRead, RolloutRead

_ROLE = """
select r.name, r.description, r.capabilities, r.defined, r.modules,
       coalesce((select array_agg(j.name order by j.name) from jobs j where j.role = r.name), '{}') as jobs,
       coalesce((select array_agg(d.name order by d.name) from devices d where d.role = r.name), '{}') as devices
from roles r
"""


def _role(row) -> RoleRead:
    return RoleRead(
        name=row["name"],
        description=row["description"],
        capabilities=list(row["capabilities"]),
        defined=row["defined"],
        modules=row["modules"],
        jobs=list(row["jobs"]),
        devices=list(row["devices"]),
    )


async def list_roles(db) -> list[RoleRead]:
    return [_role(r) for r in await db.fetch(_ROLE + " order by r.name")]


async def get_role(db, name: str) -> RoleRead | None:
    row = await db.fetchrow(_ROLE + " where r.name = $1", name)
    return _role(row) if row else None


async def put_role(db, name: str, description: str, modules: dict[str, dict]) -> None:
    await db.execute(
        """
        insert into roles (name, description, capabilities, modules, defined, updated_at)
        values ($1, $2, $3, $4, true, now())
        on conflict (name) do update set description = excluded.description,
            capabilities = excluded.capabilities, modules = excluded.modules, defined = true, updated_at = now()
        """,
        name,
        description,
        sorted(modules),
        modules,
    )


async def define_if_new(db, name: str, description: str, modules: dict[str, dict]) -> None:
    """A preset role, unless people defined that role already."""
    await db.execute(
        """
        insert into roles (name, description, capabilities, modules, defined) values ($1, $2, $3, $4, true)
        on conflict (name) do update set description = excluded.description,
            capabilities = excluded.capabilities, modules = excluded.modules, defined = true
        where not roles.defined
        """,
        name,
        description,
        sorted(modules),
        modules,
    )


async def delete_role(db, name: str) -> bool:
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("update devices set role = null where role = $1", name)
        return await conn.fetchval("delete from roles where name = $1 returning true", name) is not None


async def role_job_names(db, role: str) -> list[str]:
    return [r["name"] for r in await db.fetch("select name from jobs where role = $1", role)]


async def mark_role_job(db, job_name: str, role: str) -> None:
    await db.execute("update jobs set role = $2 where name = $1", job_name, role)


async def assign(db, device_ids: list[str], role: str, config: dict[str, dict] | None) -> None:
    await db.execute(
        "update devices set role = $2, role_config = coalesce($3, role_config) where id = any($1)",
        device_ids,
        role,
        config,
    )


async def device_ids_with_role(db, roles: list[str]) -> list[str]:
    return [r["id"] for r in await db.fetch("select id from devices where role = any($1) order by name", roles)]


async def roles_using(db, module: str) -> list[str]:
    return [r["name"] for r in await db.fetch("select name from roles where modules ? $1", module)]


# ---- sync state ------------------------------------------------------------------------------------------------


async def set_sync(db, device_id: str, state: str, reason: str = "", applied: dict[str, Any] | None = None) -> None:
    await db.execute(
        """
        insert into device_sync (device_id, state, reason, applied) values ($1, $2, $3, $4)
        on conflict (device_id) do update set state = excluded.state, reason = excluded.reason,
            applied = coalesce(excluded.applied, device_sync.applied), updated_at = now()
        """,
        device_id,
        state,
        reason,
        applied,
    )


async def sync_state(db, device_id: str) -> tuple[str, dict | None] | None:
    row = await db.fetchrow("select state, applied from device_sync where device_id = $1", device_id)
    return (row["state"], row["applied"]) if row else None


# ---- rollouts --------------------------------------------------------------------------------------------------

_ROLLOUT = """
select r.*, m.name as module, m.sha256,
       array(select d.name from unnest(r.devices) with ordinality u(id, n) join devices d on d.id = u.id
             order by u.n) as device_names,
       array(select d.name from devices d where d.id = any(r.done) order by d.name) as done_names,
       array(select d.name from devices d where d.id = any(r.skipped) order by d.name) as skipped_names,
       (select d.name from devices d where d.id = r.failed) as failed_name
from rollouts r join modules m on m.id = r.module_id
"""


def _rollout(row) -> RolloutRead:
    return RolloutRead(
        id=row["id"],
        module=row["module"],
        sha256=row["sha256"],
        state=row["state"],
        devices=list(row["device_names"]),
        done=list(row["done_names"]),
        skipped=list(row["skipped_names"]),
        failed=row["failed_name"],
        reason=row["reason"],
        created_at=row["created_at"],
        finished_at=row["finished_at"],
    )


async def create_rollout(db, module_id: int, device_ids: list[str]) -> int:
    return await db.fetchval(
        "insert into rollouts (module_id, state, devices) values ($1, 'running', $2) returning id",
        module_id,
        device_ids,
    )


async def rollout_progress(db, rollout_id: int, *, done: str | None = None, skipped: str | None = None) -> None:
    await db.execute(
        """
        update rollouts set done = case when $2::text is null then done else array_append(done, $2) end,
                            skipped = case when $3::text is null then skipped else array_append(skipped, $3) end
        where id = $1
        """,
        rollout_id,
        done,
        skipped,
    )


async def finish_rollout(db, rollout_id: int, state: str, failed: str | None = None, reason: str = "") -> None:
    await db.execute(
        "update rollouts set state = $2, failed = $3, reason = $4, finished_at = now() where id = $1",
        rollout_id,
        state,
        failed,
        reason,
    )


async def list_rollouts(db, limit: int = 50) -> list[RolloutRead]:
    return [_rollout(r) for r in await db.fetch(_ROLLOUT + " order by r.id desc limit $1", limit)]


async def get_rollout(db, rollout_id: int) -> RolloutRead | None:
    row = await db.fetchrow(_ROLLOUT + " where r.id = $1", rollout_id)
    return _rollout(row) if row else None
