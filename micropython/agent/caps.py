"""Capability loader: imports the role modules named in the board's config and sets them up.

Layer: device side, application. A capability module lives in the board's caps/ directory and declares
itself by module-level names:

    NAME      'blind'
    VERSION   '1'
    COMMANDS  {'move': {'direction': {...}, 'seconds': {...}}, 'stop': {}}   (docs/protocol.md schema)
    setup(cfg) -> an object with one coroutine method per command
    stop(obj)  optional: bring the hardware to a safe state (agent shutdown)

This module must not touch hardware itself; a module that fails to load is reported and skipped so the
board keeps serving the others.
"""

from agent.port import print_exception


class Capability:
    __slots__ = ("name", "version", "commands", "module", "instance")

    def __init__(self, module, instance):
        self.module = module
        self.instance = instance
        self.name = module.NAME
        self.version = str(module.VERSION)
        self.commands = module.COMMANDS

    def handler(self, command):
        """The coroutine function for a declared command, or None."""
        if command not in self.commands:
            return None
        return getattr(self.instance, command, None)

    def stop(self):
        stop = getattr(self.module, "stop", None)
        if stop is not None:
            stop(self.instance)


def _import(name):
    module = __import__("caps." + name)
    # __import__('caps.x') returns the package `caps` in both runtimes.
    return getattr(module, name)


def load(caps_config):
    """{name: cfg} -> (list of Capability, list of (name, error text) for those that failed)."""
    loaded = []
    failed = []
    for name, cfg in caps_config.items():
        try:
            module = _import(name)
            loaded.append(Capability(module, module.setup(cfg)))
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
