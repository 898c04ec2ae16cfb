"""Several sites, one database (docs/operations.md, "Scaling out"): each `pifleet serve --site NAME` is a site that
owns the boards paired through it (their OSCORE contexts live with it) and runs their jobs through its own Huey
queue; any site's API and dashboard reach the whole fleet through the database.

Layer: service, below jobs (the runner takes its device locks, the queue its queue names and routing) and above
devices and storage. No litestar, no aiocoap. Parts: `service.py` (heartbeat, the LISTEN connection, who is
reachable), `relay.py` (a BoardLink that hands exchanges with another site's board to that site's master),
`locks.py` (one run per device at a time, across masters), `storage.py` (the queries).

Without --site a master is the site `default`, and its Huey queue keeps the name it always had (`pifleet`).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import InvalidError

DEFAULT = "default"
# a site name is part of a queue name and a LISTEN channel (63 bytes at most): short and plain
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
STALE_S = 10.0  # a site whose master has not heartbeated for this long is unreachable
HEARTBEAT_S = 2.0


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidError(
            f"site name {name!r}: 1-32 lower-case letters, digits or '-', starting with a letter or digit", field="site"
        )
    return name


def queue_name(site: str) -> str:
    """The Huey queue of a site's runs (the default site's keeps its old name)."""
    return "pifleet" if site == DEFAULT else f"pifleet.{site}"


def channel(site: str) -> str:
    """The LISTEN/NOTIFY channel a site's master listens on."""
    return f"pifleet.site.{site}"


def session_url(url: str, site: str) -> str:
    """The database URL whose sessions say which site they work for (the `pifleet.site` setting, which asyncpg
    sends at connect; the database's triggers and `pifleet_site()` read it)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "pifleet.site"]
    query.append(("pifleet.site", site))
    return urlunsplit(parts._replace(query=urlencode(query)))
