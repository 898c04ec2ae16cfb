"""GPIO rules per chip on the master: the board's own list (micropython/agent/pins.py), loaded as it is.

Layer: service helper, pure (reads one shipped file once). A capability declares a pin in its CONFIG as
{"type": "integer", "pin": "out" | "in" | "adc"}; params.check_config asks problem() for each such field, so a
role that would drive a flash pin, the serial console or a pin the chip does not have is refused before any
board gets it. The rules and their wording are the agent's module itself (it is runtime-neutral: no
`machine`), run here under CPython, so the master and the boards cannot drift.

A role is not tied to a chip: without one, the pins are checked for the plain ESP32, the board this project
is built for (DESIGN.md decision 10) and the one the virtual board is; a caller that knows the chip (a flash
probes it) passes esptool's name ("ESP32-S3") and gets that chip's list.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from types import ModuleType

from .. import resources

DEFAULT_CHIP = "ESP32"
USES = ("out", "in", "adc")


@cache
def _rules() -> ModuleType:
    path = resources.agent() / "agent" / "pins.py"
    spec = importlib.util.spec_from_file_location("pifleet._agent_pins", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def chip_name(chip: str | None) -> str:
    """The agent's name for a chip: esptool's "ESP32-S3" → "ESP32S3"; None → the plain ESP32."""
    return (chip or DEFAULT_CHIP).upper().replace("-", "")


def problem(number: int, use: str, chip: str | None = None) -> str | None:
    """Why GPIO `number` cannot serve `use` on the chip, or None (also for a chip without a list)."""
    return _rules().problem(number, use, chip_name(chip))


def warning(number: int, chip: str | None = None) -> str | None:
    """A sentence when the pin is usable but a strapping pin of the chip."""
    return _rules().warning(number, chip_name(chip))
