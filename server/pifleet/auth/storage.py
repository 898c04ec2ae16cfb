"""Queries of users, sessions and API tokens (sql/0011_auth.sql). Plain async functions; hashes in, Structs out.

No function here returns a password hash to anyone but the login check, and none sees a secret in the clear.
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from .model import TokenRead, UserRead

Db = asyncpg.Pool | asyncpg.Connection


async def count_users(db: Db) -> int:
    return await db.fetchval("select count(*) from users")


async def create_first_user(db: asyncpg.Pool, name: str, role: str, password_hash: str) -> UserRead | None:
    """The first user, or None when there already is one (two setups at once: the table lock orders them)."""
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("lock table users in share row exclusive mode")
        if await conn.fetchval("select exists (select 1 from users)"):
            return None
        return await create_user(conn, name, role, password_hash)


async def create_user(db: Db, name: str, role: str, password_hash: str) -> UserRead | None:
    """None when the name is taken."""
    row = await db.fetchrow(
        "insert into users (name, role, password_hash) values ($1, $2, $3) on conflict (name) do nothing"
        " returning name, role, created_at",
        name,
        role,
        password_hash,
    )
    return UserRead(**row) if row else None


async def password_of(db: Db, name: str) -> asyncpg.Record | None:
    return await db.fetchrow("select id, name, role, password_hash from users where name = $1", name)


async def set_password_hash(db: Db, user_id: int, password_hash: str) -> None:
    await db.execute("update users set password_hash = $2 where id = $1", user_id, password_hash)


async def list_users(db: Db) -> list[UserRead]:
    return [UserRead(**r) for r in await db.fetch("select name, role, created_at from users order by name")]


async def delete_user(db: asyncpg.Pool, name: str) -> bool | None:
    """True: deleted (its sessions and tokens with it); False: no such user; None: it is the last admin."""
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("lock table users in share row exclusive mode")
        row = await conn.fetchrow("select id, role from users where name = $1", name)
        if row is None:
            return False
        if row["role"] == "admin" and await conn.fetchval("select count(*) from users where role = 'admin'") == 1:
            return None
        await conn.execute("delete from users where id = $1", row["id"])
        return True


# ---- sessions ----------------------------------------------------------------------------------------------


async def create_session(db: Db, id_hash: bytes, user_id: int, lifetime: timedelta, address: str | None) -> None:
    await db.execute(
        "insert into sessions (id_hash, user_id, expires_at, address) values ($1, $2, now() + $3, $4)",
        id_hash,
        user_id,
        lifetime,
        address,
    )


async def live_session(db: Db, id_hash: bytes, idle: timedelta, touch_after: timedelta) -> asyncpg.Record | None:
    """The session's user if the session is neither idle too long nor past its lifetime; notes it as seen
    (at most once per `touch_after`, so a polling dashboard does not write on every request)."""
    return await db.fetchrow(
        """with s as (select id_hash, user_id, last_seen_at from sessions
                      where id_hash = $1 and expires_at > now() and last_seen_at > now() - $2::interval),
                seen as (update sessions set last_seen_at = now()
                         where id_hash = (select id_hash from s where last_seen_at < now() - $3::interval))
           select u.id, u.name, u.role from s join users u on u.id = s.user_id""",
        id_hash,
        idle,
        touch_after,
    )


async def delete_session(db: Db, id_hash: bytes) -> None:
    await db.execute("delete from sessions where id_hash = $1", id_hash)


async def delete_dead_sessions(db: Db, idle: timedelta) -> None:
    await db.execute("delete from sessions where expires_at <= now() or last_seen_at <= now() - $1::interval", idle)


# ---- API tokens --------------------------------------------------------------------------------------------

_TOKEN = """select t.id, t.name, t.scope, u.name as created_by, t.created_at, t.last_used_at
            from api_tokens t left join users u on u.id = t.created_by"""


async def create_token(db: Db, name: str, scope: str, token_hash: bytes, user_id: int) -> TokenRead:
    token_id = await db.fetchval(
        "insert into api_tokens (name, scope, token_hash, created_by) values ($1, $2, $3, $4) returning id",
        name,
        scope,
        token_hash,
        user_id,
    )
    return TokenRead(**await db.fetchrow(_TOKEN + " where t.id = $1", token_id))


async def list_tokens(db: Db) -> list[TokenRead]:
    return [TokenRead(**r) for r in await db.fetch(_TOKEN + " order by t.id")]


async def delete_token(db: Db, token_id: int) -> bool:
    return await db.fetchval("delete from api_tokens where id = $1 returning true", token_id) is not None


async def use_token(db: Db, token_hash: bytes, touch_after: timedelta) -> asyncpg.Record | None:
    """The token (and its creator) by hash, noting the time it was used (at most once per `touch_after`)."""
    return await db.fetchrow(
        """with t as (select id, name, scope, created_by, last_used_at from api_tokens where token_hash = $1),
                used as (update api_tokens set last_used_at = now()
                         where id = (select id from t where last_used_at is null
                                                              or last_used_at < now() - $2::interval))
           select t.id, t.name, t.scope, t.created_by from t""",
        token_hash,
        touch_after,
    )
