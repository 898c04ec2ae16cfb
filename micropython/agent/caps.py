"""Capability loader: imports the role modules named in the board's config and sets them up.

Layer: device side, application. A capability module lives in the board's caps/ directory and declares
itself by module-level names:

    NAME      'blind'
    VERSION   '1'
    COMMANDS  {'move': {'direction': {...}, 'seconds': {...}}, 'stop': {}}   (docs/protocol.md schema)
    CONFIG    {'up_pin': {...}, ...}: the per-device configuration setup() takes (checked by the master);
              dropped once the capability is set up (and self-checked): read it in setup(), not later
    TELEMETRY optional {'celsius': {...}}: what read() returns, sent every cfg['telemetry_s'] seconds
    STATE     optional {'position': {...}}: what the capability reports as it changes (agent/state.py); dropped
              once set up, like CONFIG
    setup(cfg) -> an object with one coroutine method per command (and optionally `run(emit)`, a background
               task that reports events through emit(dict))
    stop(obj)  optional: bring the hardware to a safe state (agent shutdown, or the module being replaced)
    selftest(obj) optional: raise if the hardware is not usable; run when a module is loaded at runtime

A module is imported from caps/STEM, where STEM is config["modules"][name] (NAME_HASHPREFIX as the master
names versions) or the name itself.

This module must not touch hardware itself; a module that fails to load is reported and skipped so the
board keeps serving the others.
"""

import sys

from agent.port import collect, os, print_exception
from agent.resources import Capability

CAPS_DIR = "caps"


def _import(stem):
    collect()  # a module's code is allocated in pieces of its functions' size: start from a compact heap
    module = __import__("caps." + stem)
    # __import__('caps.x') returns the package `caps` in both runtimes.
    return getattr(module, stem)


def unload(stem):
    """Forget an imported module, so its code and data can be collected (a replaced version)."""
    sys.modules.pop("caps." + stem, None)
    package = sys.modules.get("caps")
    if package is not None and hasattr(package, stem):
        delattr(package, stem)


def load_one(name, stem, cfg, check=False):
    """Import caps/STEM, check it is capability `name`, set it up (and run its selftest when check)."""
    try:
        module = _import(stem)
        if getattr(module, "NAME", None) != name:
            raise ValueError("%s declares NAME %r, not %r" % (stem, getattr(module, "NAME", None), name))
        cap = Capability(module, module.setup(cfg), stem, cfg)
        selftest = getattr(module, "selftest", None)
        if check and selftest is not None:
            try:
                selftest(cap.instance)
            except Exception:
                cap.stop()
                raise
        for declared in ("CONFIG", "STATE"):
            # CONFIG serves setup(), STATE the master (both read by it from the source): their dicts need no
            # heap while the capability runs. A module reads what it needs from cfg in setup().
            if hasattr(module, declared):
                delattr(module, declared)
    except Exception:
        unload(stem)  # a module that cannot run does not stay in the heap
        raise
    return cap


def load(caps_config, stems=None):
    """{name: cfg}, {name: stem} -> (list of Capability, list of (name, error text) for those that failed)."""
    loaded = []
    failed = []
    stems = stems or {}
    for name, cfg in caps_config.items():
        try:
            loaded.append(load_one(name, stems.get(name, name), cfg))
        except Exception as exc:  # noqa: BLE001 — one broken role module must not take the board down
            print("caps: cannot load", name)
            print_exception(exc)
            failed.append((name, repr(exc)))
    return loaded, failed


def stop_all(capabilities):
    for cap in capabilities:
        try:
            cap.stop()
        except Exception as exc:  # noqa: BLE001 — keep stopping the others
            print_exception(exc)


# -- the caps/ directory: module files (caps/STEM.mpy, or .py under CPython) --------------------------------------


def valid_stem(stem):
    # a-z, 0-9 and _, looked at as bytes: each character of a str iterated over is interned (docs/agent.md, "Heap")
    return 0 < len(stem) <= 40 and all(48 <= b <= 57 or b == 95 or 97 <= b <= 122 for b in stem.encode())


def exists(stem):
    for suffix in (".mpy", ".py"):
        try:
            os.stat(CAPS_DIR + "/" + stem + suffix)
            return True
        except OSError:
            pass
    return False


def kept_stems(config):
    """The module files a board keeps: the versions its config runs, and the ones they replaced (its fallbacks,
    config["previous"], agent/role.py)."""
    stems = config.get("modules", {})
    return [stems.get(name, name) for name in config.get("caps", {})] + [
        entry["stem"] for entry in config.get("previous", {}).values()
    ]


def remove_unused(config):
    """Delete module files the config neither runs nor keeps as a fallback, and every unfinished .new file."""
    keep = kept_stems(config)
    for name in os.listdir(CAPS_DIR):
        stem, _, suffix = name.rpartition(".")
        if name.startswith("_") or (suffix in ("mpy", "py") and stem in keep):  # __init__, shared helpers
            continue
        if suffix in ("mpy", "py", "new"):
            try:
                os.remove(CAPS_DIR + "/" + name)
            except OSError:
                pass
