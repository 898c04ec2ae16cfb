"""Role presets: which capability modules a role uses and their per-board configuration (pins, sensors).

Pure data. The master stores each preset as a role the first time it starts (RoleService.store_presets); from
then on a preset is a role like any other, which people may redefine (PUT /api/roles/NAME), and flashing writes
what the stored role says. The presets themselves serve where no role service runs: a FlashService built
without one (benchmarks), and virtual boards started on their own (pifleet.sim), as their default modules.
"""

from __future__ import annotations

from ..errors import InvalidError

ROLES: dict[str, dict[str, dict]] = {
    "blind": {"blind": {"up_pin": 25, "down_pin": 26, "dead_time_ms": 500, "max_seconds": 120}},
    "sensor": {"temperature": {"pin": 34}},
}


def role_caps(role: str) -> dict[str, dict]:
    """The capability configs of a role preset; InvalidError(field="role") for a role with no preset."""
    caps = ROLES.get(role)
    if caps is None:
        raise InvalidError(f"unknown role {role!r} (known: {', '.join(sorted(ROLES))})", field="role")
    return caps
