"""Migrations: each row says which pifleet applied it, and a database migrated by a newer pifleet is refused,
naming both versions, before anything runs on a schema this pifleet cannot read."""

from __future__ import annotations

import uuid

import pytest

from pifleet.storage import migrations, postgres


@pytest.fixture
async def fresh_pool(pg_url):
    pool = await postgres.create_pool(postgres.with_database(pg_url, f"m_{uuid.uuid4().hex[:12]}"))
    yield pool
    await pool.close()


async def test_each_migration_records_the_pifleet_that_applied_it(fresh_pool):
    applied = await migrations.migrate(fresh_pool)
    assert applied == [version for version, _, _ in migrations.available()]
    rows = await fresh_pool.fetch("select version, pifleet_version from schema_migrations order by version")
    assert [r["version"] for r in rows] == applied
    assert {r["pifleet_version"] for r in rows} == {migrations.package_version()}
    assert await migrations.migrate(fresh_pool) == []  # a restart applies nothing and refuses nothing


async def test_a_database_migrated_by_a_newer_pifleet_is_refused_naming_both_versions(fresh_pool):
    await migrations.migrate(fresh_pool)
    known = max(version for version, _, _ in migrations.available())
    await fresh_pool.execute(
        "insert into schema_migrations (version, name, pifleet_version) values ($1, 'from_the_future', '9.1.0')",
        known + 1,
    )
    with pytest.raises(migrations.SchemaTooNewError) as refused:
        await migrations.migrate(fresh_pool)
    message = str(refused.value)
    assert f"migrated by pifleet 9.1.0 (schema {known + 1:04d})" in message
    assert f"this is pifleet {migrations.package_version()}, which knows schema {known:04d} at most" in message
    # the lock is given back: a fixed pifleet (here: one that knows the migration) can start on it at once
    await fresh_pool.execute("delete from schema_migrations where version = $1", known + 1)
    assert await migrations.migrate(fresh_pool) == []


async def test_a_newer_schema_without_a_recorded_version_is_refused_too(fresh_pool):
    await migrations.migrate(fresh_pool)
    await fresh_pool.execute("insert into schema_migrations (version, name) values (9999, 'unrecorded')")
    with pytest.raises(migrations.SchemaTooNewError, match=r"migrated by a newer pifleet \(schema 9999\)"):
        await migrations.migrate(fresh_pool)
