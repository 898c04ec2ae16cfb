"""Python jobs: call a function of an allow-listed module in the process's modules directory.

Layer: role module of a process target (CPython only), loaded by agent/caps.py like any capability.
`function` is "module:function". Only modules that are files in the configured directory can be called —
`DIR/weather.py` is module `weather` — and only functions defined in that file (not names it imported, not
names starting with "_"). Modules are loaded from their file, never imported from sys.path, so "os:system"
or any installed package is refused. A changed file is loaded again at its next call.

Config (caps.python in config.json): `modules_dir` (the directory), optional `modules` (a list narrowing the
allow-list further). A coroutine function is awaited; a plain function runs in a worker thread, so a slow
call does not stop the agent from answering the master. The result is `{"value": <JSON-safe return value>}`.
A refused call raises ValueError (→ 4.00, naming the problem); an exception in the function, or a result
larger than one answer carries (_jsonsafe.MAX_BYTES), answers 5.00.
"""

import asyncio
import importlib.util
import inspect
import os
import sys

from caps._jsonsafe import check_size, jsonsafe

NAME = "python"
VERSION = "1"
COMMANDS = {
    "call": {
        "function": {"type": "string"},
        "kwargs": {"type": "object", "required": False},
    },
}
CONFIG = {
    "modules_dir": {"type": "string"},
    "modules": {"type": "list", "required": False},  # narrows the allow-list to these module names
}

_PACKAGE = "pifleet_modules"  # sys.modules namespace of loaded modules: never shadows a real import


def _identifier(text):
    return text.isidentifier() and not text.startswith("_")


class Modules:
    def __init__(self, cfg):
        self.directory = os.path.abspath(cfg.get("modules_dir") or "modules")
        only = cfg.get("modules")
        self.only = set(only) if only is not None else None
        self._loaded = {}  # name -> (mtime_ns, module)

    def allowed(self):
        """Names of the modules that may be called: the *.py files of the directory (and `modules` if set)."""
        try:
            files = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        names = [f[:-3] for f in files if f.endswith(".py") and _identifier(f[:-3])]
        return sorted(n for n in names if self.only is None or n in self.only)

    def _load(self, name):
        path = os.path.join(self.directory, name + ".py")
        mtime = os.stat(path).st_mtime_ns
        cached = self._loaded.get(name)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        qualified = "%s.%s" % (_PACKAGE, name)
        spec = importlib.util.spec_from_file_location(qualified, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[qualified] = module  # dataclasses, pickle and friends look modules up there
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(qualified, None)
            raise
        self._loaded[name] = (mtime, module)
        return module

    def resolve(self, function):
        """'module:function' → the function object, or ValueError saying why it may not be called."""
        module_name, sep, func_name = function.partition(":")
        if not sep or not _identifier(module_name) or not _identifier(func_name):
            raise ValueError("function must be 'module:function' (public names), got %r" % function)
        allowed = self.allowed()
        if module_name not in allowed:
            raise ValueError(
                "module %r is not allowed on this process (allowed: %s, from %s)"
                % (module_name, ", ".join(allowed) or "none", self.directory)
            )
        module = self._load(module_name)
        fn = getattr(module, func_name, None)
        if fn is None or not callable(fn):
            raise ValueError("module %r has no function %r" % (module_name, func_name))
        if getattr(fn, "__module__", None) != module.__name__:
            raise ValueError(
                "%r is not defined in module %r (only its own functions can be called)" % (func_name, module_name)
            )
        return fn

    async def call(self, function, kwargs=None):
        fn = self.resolve(function)
        kwargs = kwargs or {}
        try:
            inspect.signature(fn).bind(**kwargs)
        except TypeError as exc:
            raise ValueError("kwargs do not fit %s: %s" % (function, exc)) from None
        if inspect.iscoroutinefunction(fn):
            result = await fn(**kwargs)
        else:
            result = await asyncio.to_thread(fn, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        return check_size({"value": jsonsafe(result)})


def setup(cfg):
    return Modules(cfg)
