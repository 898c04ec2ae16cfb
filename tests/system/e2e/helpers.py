"""Helpers for end-to-end tests: reading pin pulses off a virtual board, building job documents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

UP_PIN, DOWN_PIN = 25, 26  # the blind role's preset pins on a virtual board


def iso_in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def blind_job(
    name: str,
    device: str,
    *,
    at_in: float,
    down_s: float,
    up_after_s: float,
    up_s: float,
    attempts: int = 1,
    backoff_s: float = 1,
) -> dict:
    return {
        "name": name,
        "target": {"device": device},
        "action": {"capability": "blind", "command": "move", "params": {"direction": "down", "seconds": down_s}},
        "trigger": {"type": "at", "at": iso_in(at_in)},
        "follow_ups": [
            {
                "on": "success",
                "action": {"capability": "blind", "command": "move", "params": {"direction": "up", "seconds": up_s}},
                "trigger": {"type": "delay", "seconds": up_after_s},
            }
        ],
        "retry": {"attempts": attempts, "backoff_s": backoff_s},
    }
