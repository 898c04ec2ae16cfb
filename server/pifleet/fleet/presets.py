"""Role presets: which capability modules a role uses and their per-board configuration (pins, sensors).

Pure data, shared by the provisioning bundle (pifleet.flashing.bundle) and the virtual boards (pifleet.sim).
Roles defined by people, with their own module configuration, come with the roles issue.
"""

ROLES: dict[str, dict[str, dict]] = {
    "blind": {"blind": {"up_pin": 25, "down_pin": 26, "dead_time_ms": 500, "max_seconds": 120}},
    "sensor": {"temperature": {"pin": 34}},
}
