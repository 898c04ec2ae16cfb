"""Queries of the device aggregate: devices, their capabilities, roles."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import asyncpg

from ..model import CapabilityRead, DeviceRead, GroupRead, ReadingRead, SyncRead

# online: registered, seen within its lifetime, and not found unreachable since. last_seen is kept when a board
# leaves (deregisters, is revoked): it says when the board was last seen, not whether it is there now. A board
# whose site's master is down (sql/0018) is not online either: nothing can reach it.
_SITE_DOWN = "pifleet_site_down(d.site)"
_ONLINE = (
    "coalesce(d.registration_id is not null and d.last_seen + make_interval(secs => d.lifetime_s) > now()"
    f" and d.unreachable is null and not {_SITE_DOWN}, false)"
)

_SELECT = f"""
select d.*, {_ONLINE} as online, {_SITE_DOWN} as site_down,
       coalesce((select json_agg(json_build_object('name', c.name, 'version', c.version, 'commands', c.commands,
                                                   'module', c.module)
                                 order by c.name)
                 from device_capabilities c where c.device_id = d.id), '[]')::jsonb as caps,
       s.state as sync_state, s.reason as sync_reason, s.updated_at as sync_at
from devices d left join device_sync s on s.device_id = d.id
"""


def _read(row: asyncpg.Record) -> DeviceRead:
    return DeviceRead(
        id=row["id"],
        name=row["name"],
        kind=row["kind"],
        role=row["role"],
        online=row["online"],
        last_seen=row["last_seen"],
        address=row["address"],
        port=row["port"],
        firmware=row["firmware"],
        mpy=row["mpy"],
        agent_version=row["agent_version"],
        unreachable="site unreachable" if row["site_down"] else row["unreachable"],
        capabilities=[CapabilityRead(**c) for c in row["caps"]],
        sync=SyncRead(state=row["sync_state"], reason=row["sync_reason"], updated_at=row["sync_at"])
        if row["sync_state"]
        else None,
        role_config=row["role_config"],
        safe_mode=row["safe_mode"],
        site=row["site"],
    )


async def list_devices(db: asyncpg.Pool | asyncpg.Connection) -> list[DeviceRead]:
    return [_read(r) for r in await db.fetch(_SELECT + " order by d.name")]


async def get_by_name(db, name: str) -> DeviceRead | None:
    row = await db.fetchrow(_SELECT + " where d.name = $1", name)
    return _read(row) if row else None


async def get_by_id(db, device_id: str) -> DeviceRead | None:
    row = await db.fetchrow(_SELECT + " where d.id = $1", device_id)
    return _read(row) if row else None


async def online_map(db) -> dict[str, bool]:
    return {r["id"]: r["online"] for r in await db.fetch(f"select d.id, {_ONLINE} as online from devices d")}


async def ensure_role(db, name: str) -> None:
    await db.execute("insert into roles (name) values ($1) on conflict do nothing", name)


async def upsert_registration(
    db,
    *,
    device_id: str,
    name: str,
    kind: str,
    role: str | None,
    address: str,
    port: int,
    registration_id: str,
    lifetime_s: int,
    firmware: str | None,
    mpy: int | None,
    agent_version: str | None,
    links: str,
    safe_mode: str | None = None,
) -> None:
    """Record a (re-)registration. A name already used by another device gets the device id appended."""
    taken = await db.fetchval("select id from devices where name = $1 and id <> $2", name, device_id)
    if taken:
        name = f"{name}-{device_id}"
    await db.execute(
        """
        insert into devices (id, name, kind, role, address, port, registration_id, lifetime_s, last_seen,
                             firmware, mpy, agent_version, links, unreachable, safe_mode)
        values ($1, $2, $3, $4, $5, $6, $7, $8, now(), $9, $10, $11, $12, null, $13)
        on conflict (id) do update set
            -- the master's assignment wins over what the board says; the board's fills in a role never assigned
            name = excluded.name, kind = excluded.kind, role = coalesce(devices.role, excluded.role),
            address = excluded.address,
            port = excluded.port, registration_id = excluded.registration_id, lifetime_s = excluded.lifetime_s,
            last_seen = now(), firmware = excluded.firmware, mpy = excluded.mpy,
            agent_version = excluded.agent_version, links = excluded.links, unreachable = null,
            safe_mode = excluded.safe_mode
        """,
        device_id,
        name,
        kind,
        role,
        address,
        port,
        registration_id,
        lifetime_s,
        firmware,
        mpy,
        agent_version,
        links,
        safe_mode,
    )


async def relink_registration(
    db,
    *,
    registration_id: str,
    device_id: str,
    links: str,
    role: str | None,
    lifetime_s: int | None,
    address: str,
    port: int,
) -> bool:
    """A registration update that carries the board's new links (a role switch in place): the links, the role as a
    registration sets it (stored as a role if it is new: one statement), safe mode ended (a role runs). False when
    the registration is not this board's."""
    return (
        await db.fetchval(
            """
            with named as (insert into roles (name) select $4::text where $4::text is not null on conflict do nothing)
            update devices set last_seen = now(), unreachable = null, address = $5, port = $6,
                               lifetime_s = coalesce($7, lifetime_s), links = $3,
                               role = coalesce(role, $4::text), safe_mode = null
            where registration_id = $1 and id = $2 returning true
            """,
            registration_id,
            device_id,
            links,
            role,
            address,
            port,
            lifetime_s,
        )
        is not None
    )


async def touch_registration(db, registration_id: str, lifetime_s: int | None, address: str, port: int) -> str | None:
    """A registration update (heartbeat); returns the device id, or None for an unknown registration."""
    return await db.fetchval(
        """
        update devices set last_seen = now(), unreachable = null, address = $3, port = $4,
                           lifetime_s = coalesce($2, lifetime_s)
        where registration_id = $1 returning id
        """,
        registration_id,
        lifetime_s,
        address,
        port,
    )


class Heartbeat(NamedTuple):
    """A registration update: the registration, the board that sent it (None: whoever owns it), from where."""

    registration_id: str
    device_id: str | None
    lifetime_s: int | None
    address: str
    port: int


async def touch_registrations(db, beats: list[Heartbeat]) -> list[str | None]:
    """Registration updates in one statement (one round trip, one commit): each registration that exists and
    belongs to the board named in the update (if one is named) is seen now, from the update's address. For each
    update: the device id, or None (no such registration, or another board's). The last update of a registration
    in the batch is the one whose address and lifetime stay."""
    last = {(b.registration_id, b.device_id): b for b in beats}
    rows = await db.fetch(
        """
        update devices d set last_seen = now(), unreachable = null, address = u.address, port = u.port,
                             lifetime_s = coalesce(u.lifetime_s, d.lifetime_s)
        from unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::int[])
             as u(registration_id, device_id, lifetime_s, address, port)
        where d.registration_id = u.registration_id and (u.device_id is null or d.id = u.device_id)
        returning d.registration_id, d.id
        """,
        *zip(*[tuple(b) for b in last.values()], strict=True),
    )
    owners = {r["registration_id"]: r["id"] for r in rows}
    return [owner if (owner := owners.get(b.registration_id)) and b.device_id in (None, owner) else None for b in beats]


async def remove_registration(db, registration_id: str) -> str | None:
    return await db.fetchval(
        "update devices set registration_id = null where registration_id = $1 returning id",
        registration_id,
    )


async def mark_unreachable(db, device_id: str, reason: str, heard: datetime | None = None) -> None:
    """Mark a board unreachable; with `heard` (its last_seen when the failed request went out) only if nothing came
    from it since: a board that restarted and registered again meanwhile is there, even though it refused a
    retransmission of the request from before its restart."""
    if heard is None:
        await db.execute("update devices set unreachable = $2 where id = $1", device_id, reason)
    else:
        await db.execute(
            "update devices set unreachable = $2 where id = $1 and last_seen is not distinct from $3",
            device_id,
            reason,
            heard,
        )


async def replace_capabilities(db: asyncpg.Pool, device_id: str, caps: list[dict[str, Any]]) -> None:
    async with db.acquire() as conn, conn.transaction():
        # the device row's lock serialises two replacements (a registration and a sync may cross)
        await conn.execute("select 1 from devices where id = $1 for update", device_id)
        await conn.execute("delete from device_capabilities where device_id = $1", device_id)
        await conn.executemany(
            "insert into device_capabilities (device_id, name, version, commands, module) values ($1, $2, $3, $4, $5)",
            [(device_id, c["name"], str(c["version"]), c["commands"], c.get("module")) for c in caps],
        )


async def last_seen(db, device_id: str) -> datetime | None:
    return await db.fetchval("select last_seen from devices where id = $1", device_id)


async def readings(db, device: str, limit: int = 100) -> list[ReadingRead]:
    rows = await db.fetch(
        "select d.name, r.capability, r.path, r.value, r.at from readings r join devices d on d.id = r.device_id"
        " where d.name = $1 order by r.at desc limit $2",
        device,
        limit,
    )
    return [
        ReadingRead(device=r["name"], capability=r["capability"], path=r["path"], value=r["value"], at=r["at"])
        for r in rows
    ]


async def group_members(db, name: str) -> list[str] | None:
    return await db.fetchval("select devices from device_groups where name = $1", name)


async def put_group(db, name: str, devices: list[str]) -> GroupRead:
    await db.execute(
        "insert into device_groups (name, devices) values ($1, $2)"
        " on conflict (name) do update set devices = excluded.devices",
        name,
        devices,
    )
    return GroupRead(name=name, devices=devices)


async def list_groups(db) -> list[GroupRead]:
    return [
        GroupRead(name=r["name"], devices=list(r["devices"]))
        for r in await db.fetch("select name, devices from device_groups order by name")
    ]


async def delete_group(db, name: str) -> bool:
    return bool(await db.fetchval("delete from device_groups where name = $1 returning true", name))


async def add_readings(db, rows: list[tuple[str, str, str, float]]) -> None:
    await db.executemany("insert into readings (device_id, capability, path, value) values ($1, $2, $3, $4)", rows)


async def registration_owner(db, registration_id: str) -> str | None:
    return await db.fetchval("select id from devices where registration_id = $1", registration_id)


def oscore_id_bytes(number: int) -> bytes:
    """A board's OSCORE sender id: the number in the fewest big-endian bytes (at most 7, RFC 8613 §3.3)."""
    return number.to_bytes(max(1, (number.bit_length() + 7) // 8), "big")


async def next_oscore_id(db) -> bytes:
    return oscore_id_bytes(await db.fetchval("select nextval('oscore_ids')"))


async def paired_boards(db) -> list[asyncpg.Record]:
    """device id, OSCORE id, secret, address, port of every board the master can talk OSCORE with: those of its
    own site (sql/0018), paired through it."""
    return await db.fetch(
        "select d.id, s.oscore_id, s.secret, d.address, d.port from device_secrets s"
        " join devices d on d.id = s.device_id where s.oscore_id is not null and d.site = pifleet_site()"
    )


async def paired_board(db, device_id: str) -> asyncpg.Record | None:
    return await db.fetchrow(
        "select d.id, s.oscore_id, s.secret, d.address, d.port from device_secrets s"
        " join devices d on d.id = s.device_id where s.oscore_id is not null and d.id = $1",
        device_id,
    )


async def revoke(db, device_id: str) -> bool:
    """Forget a board's secret and registration: it can no longer speak for itself."""
    async with db.acquire() as conn, conn.transaction():
        found = await conn.fetchval(
            "update devices set revoked_at = now(), registration_id = null,"
            " unreachable = 'revoked' where id = $1 returning true",
            device_id,
        )
        await conn.execute("delete from device_secrets where device_id = $1", device_id)
    return bool(found)


async def record_identity(
    conn: asyncpg.Connection,
    *,
    device_id: str,
    name: str,
    role: str | None,
    mac: str,
    secret: bytes,
    oscore_id: bytes,
    firmware: str | None = None,
    replaces: str | None = None,
) -> str:
    """A board's identity, given by flashing (after a verified write) or adoption: the device with its MAC and
    secret, in one transaction. Returns the name it got: a name another device holds gets the device id appended
    (flashing refuses such a name before it writes anything).

    A factory reset gives the board a new id: the old identity (`replaces`) is forgotten — its device row, its
    secret and capabilities go; executions keep their history with the device unset."""
    async with conn.transaction():
        if replaces is not None and replaces != device_id:
            await conn.execute("delete from devices where id = $1", replaces)
        if role:
            await conn.execute("insert into roles (name) values ($1) on conflict do nothing", role)
        if await conn.fetchval("select id from devices where name = $1 and id <> $2", name, device_id):
            name = f"{name}-{device_id}"
        # the MAC belongs to this board now: a row that held it (a former identity of the same board) lets go
        await conn.execute("update devices set mac = null where mac = $1 and id <> $2", mac, device_id)
        await conn.execute(
            """
            insert into devices (id, name, role, mac, firmware) values ($1, $2, $3, $4, $5)
            on conflict (id) do update set name = excluded.name, role = excluded.role, mac = excluded.mac,
                                           revoked_at = null, unreachable = null
            """,
            device_id,
            name,
            role,
            mac,
            firmware,
        )
        await conn.execute(
            """
            insert into device_secrets (device_id, secret, oscore_id) values ($1, $2, $3)
            on conflict (device_id) do update set secret = excluded.secret, oscore_id = excluded.oscore_id,
                                                  created_at = now()
            """,
            device_id,
            secret,
            oscore_id,
        )
    return name


async def device_by_mac(db, mac: str) -> asyncpg.Record | None:
    """The device known by this MAC (id, name, role), if any."""
    return await db.fetchrow("select id, name, role from devices where mac = $1", mac)


async def device_names(db, macs: list[str]) -> dict[str, tuple[str, str]]:
    """MAC -> (device id, name) of the known devices among these MACs."""
    rows = await db.fetch("select mac, id, name from devices where mac = any($1::text[])", macs)
    return {r["mac"]: (r["id"], r["name"]) for r in rows}


async def device_exists(db, device_id: str) -> bool:
    return bool(await db.fetchval("select true from devices where id = $1", device_id))


async def name_taken_by(db, name: str) -> str | None:
    return await db.fetchval("select id from devices where name = $1", name)
