"""The PostgreSQL server a benchmark uses: the one DATABASE_URL names, else an embedded one of its own."""

from __future__ import annotations

import os
from pathlib import Path

from pifleet.storage import postgres


def server(tmp: Path):
    """(base URL, the embedded server to clean up or None); pick a database on it with postgres.with_database."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"], None
    pg = postgres.start_embedded(tmp / "pg")
    return postgres.embedded_url(pg, "postgres"), pg
