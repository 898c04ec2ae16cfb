# The .mpy version of the MicroPython the virtual chip started, for the one unix port that runs every image.
#
# Layer: unix-port shim (never copied to a board); _boot imports it around boot.py. A real ESP32 running
# MicroPython vX loads only the .mpy version of vX (sys.implementation._mpy & 1023: version, sub-version); the
# virtual board runs one unix port (.mpy 6.3) whatever image its chip started, and that port loads every 6.x
# bytecode file. So, for an image whose version loads another .mpy version ($PIFLEET_SIM_FLASH.run, the app
# descriptor's version as the virtual bootloader read it):
# - install(): `import sys` gives a stand-in whose implementation._mpy is that image's (the rest is the real sys),
#   so boot.py's mpyset_swap.py, the registration and agent/sets.py see what the image's MicroPython would report;
# - check(), after boot.py: the set at the root (agent/_mpy, its record) must be that version's, else `import
#   agent…` fails with "ValueError: incompatible .mpy file", as the image's loader would refuse those files.
#   A set without a record (flashed before records) is let through.
# (Comments, not docstrings: this shim is compiled on the board at each start, in its heap.)

import sys

from esp32 import _open_flash

_KEYS = (((1, 23), 774), ((1, 22), 518), ((1, 20), 262), ((1, 19), 6), ((0, 0), 5))  # pifleet.boardfs.mpy


def key():
    # The running image's key, or None (no version in its descriptor, or no chip: a board provisioned for tests).
    try:
        with _open_flash("r", ".run") as f:
            version = f.read().split()[1]
        major, minor = [int(x) for x in version.lstrip("v").split(".")[:2]]
    except (OSError, ValueError, IndexError):
        return None
    for since, k in _KEYS:
        if (major, minor) >= since:
            return k


class _Implementation:
    def __init__(self, impl, mpy):
        self.name, self.version, self._machine, self._mpy = impl.name, impl.version, impl._machine, mpy


class _Sys:
    def __init__(self, mpy):
        self.implementation = _Implementation(sys.implementation, mpy)

    def __getattr__(self, name):
        return getattr(sys, name)


class _Incompatible:
    def __getattr__(self, name):
        raise ValueError("incompatible .mpy file")


def install():
    k, real = key(), sys.implementation._mpy
    if k is not None and k != real & 1023:
        sys.modules["sys"] = _Sys(real & ~1023 | k)


def check():
    k = key()
    try:
        with open("agent/_mpy") as f:
            have = int(f.read())
    except (OSError, ValueError):
        return
    if k is not None and have != k:
        print("sim: the agent at the root is built for .mpy %d, this MicroPython loads %d" % (have, k))
        sys.modules["agent"] = _Incompatible()
