"""Role presets: which capability modules a role uses and their per-board configuration (pins, sensors).

Pure data, shared by flashing (a role's preset plan) and the virtual boards (pifleet.sim).
Roles defined by people, with their own module configuration, come with the roles issue.
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
