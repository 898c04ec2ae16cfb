"""Storage: the PostgreSQL server (embedded or system), the asyncpg pool, migrations, queries by aggregate.

Plain async functions that take a connection or pool and return rows or Structs. No HTTP, no CoAP here.
"""
