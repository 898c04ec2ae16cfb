"""Where the virtual board's hardware meets the outside world: files in $PIFLEET_SIM_IO.

Layer: unix-port shim (never copied to a board). Output levels are appended to pins.log as
`TIME_NS PIN VALUE` (wall clock, so a CPython test can compare with its own time.time_ns()); inputs are read
from inputs.json at every read so a test or the demo can change them while the board runs.
"""

import json
import os
import time

_IO_DIR = os.getenv("PIFLEET_SIM_IO") or "."


def _path(name):
    return _IO_DIR + "/" + name


def log_line(name, text):
    """Append one line and flush at once: the file is read while the board runs."""
    with open(_path(name), "a") as f:
        f.write(text + "\n")


def log_pin(pin, value):
    log_line("pins.log", "%d %s %d" % (time.time_ns(), pin, value))


def read_kind(kind):
    """inputs.json[kind] (a dict), or {} when the file or the kind is missing."""
    try:
        with open(_path("inputs.json")) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data.get(kind) or {}


def read_input(kind, key, default):
    """inputs.json[kind][str(key)], or default when the file or the entry is missing."""
    return read_kind(kind).get(str(key), default)
