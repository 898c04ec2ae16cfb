"""The board's rarely asked resources: /.well-known/core, /cap, /stats, /m (the module files) and /restart.

Layer: device side, application (part of agent/resources.py). The master asks for these after a registration,
a person when looking, a push while it runs: seldom enough that their code is imported for the request and
forgotten after it (agent/resources.py), leaving the heap to the commands that come all day.
"""

import asyncio

from agent import coap
from agent.port import IS_MICROPYTHON, const, forget, json, sleep_ms, ticks_diff, ticks_ms

# CoAP numbers (RFC 7252), inlined: agent/coap.py keeps only what the tests use by name
_CHANGED = const(68)
_CONTENT = const(69)
_CONTENT_FORMAT = const(12)
_GET = const(1)
_JSON = const(50)
_LINK_FORMAT = const(40)
_METHOD_NOT_ALLOWED = const(133)
_NOT_FOUND = const(132)
_NOT_IMPLEMENTED = const(161)
_POST = const(2)
_PUT = const(3)
_URI_QUERY = const(15)


def _json(obj):
    return _CONTENT, [(_CONTENT_FORMAT, coap.uint(_JSON))], json.dumps(obj).encode()


def handle(res, msg, path, segments):
    """(code, options, payload) for GET /.well-known/core, /cap, /stats, GET or PUT /m…, POST /restart and PUT /plan;
    4.04 otherwise."""
    if segments[0] == "m":
        return _modules(res, msg, segments)
    if segments[0] == "ota":  # MicroPython itself over the air: agent/ota.py, kept only while an update runs
        from agent import ota

        try:
            return ota.handle(res, msg, segments)
        finally:
            if getattr(res, "ota", None) is None:
                forget("ota")
    if path == "plan":  # the plan of the board's own timed runs, and those it ran itself (agent/plan.py)
        from agent import plan

        try:
            return plan.handle(res, msg)
        finally:
            forget("plan")
    if path == "w":  # the board's Wi-Fi: its network, new credentials (agent/wifi.py)
        from agent import wifi

        return wifi.handle(res, msg)
    if path == "restart":
        if msg.code != _POST:
            return _METHOD_NOT_ALLOWED, [], b""
        if not IS_MICROPYTHON:
            return _NOT_IMPLEMENTED, [], b""  # a process target restarts with its host, not by itself
        asyncio.create_task(_restart(res))
        return _CHANGED, [], b""
    if path not in (".well-known/core", "cap", "stats"):
        return _NOT_FOUND, [], b""
    if msg.code != _GET:
        return _METHOD_NOT_ALLOWED, [], b""
    if path == "cap":
        return _json(describe(res))
    if path == "stats":
        return _json(stats(res))
    return _CONTENT, [(_CONTENT_FORMAT, coap.uint(_LINK_FORMAT))], res.links


def links(capabilities):
    """Link-format description of what a board with these capabilities offers (RFC 6690), as bytes."""
    parts = ["</cap>;ct=50", "</stats>;ct=50"]
    for cap in capabilities:
        for command in cap.commands:
            parts.append('</a/%s/%s>;rt="pifleet.cmd";ct=50' % (cap.name, command))
    return ",".join(parts).encode()


def describe(res):
    return {
        "device": res.device_id,
        "role": res.role,
        "caps": [
            {"name": c.name, "version": c.version, "module": c.stem, "commands": c.commands} for c in res.capabilities
        ],
        "failed": [{"name": name, "error": error} for name, error in res.failed_caps],
    }


def _memory():
    """(allocated, free) heap bytes after a full collection; (None, None) under CPython."""
    import gc

    gc.collect()
    try:
        return gc.mem_alloc(), gc.mem_free()
    except AttributeError:  # CPython's gc
        return None, None


def stats(res):
    alloc, free = _memory()
    out = dict(res.endpoint_stats)
    out["mem_alloc"] = alloc
    out["mem_free"] = free
    out["uptime_ms"] = ticks_diff(ticks_ms(), res.booted)
    out["executions"] = len(res.executions)
    out["failed_caps"] = [name for name, _ in res.failed_caps]
    from agent import boots  # the starts by their reason, safe mode, the words for a reset cause (agent/boots.py)

    try:  # why the board last started (machine.reset_cause(): the ESP32 port's numbers); the words are boots.py's
        # (a tuple's strings are not interned: this module is loaded at boot, words of its own would fill the pool)
        import machine

        cause = machine.reset_cause()
        out["reset_cause"] = boots.CAUSES[cause if 0 < cause < len(boots.CAUSES) else 0]
    except (ImportError, AttributeError):
        pass  # CPython without the shims

    boots.stats(out)
    forget("boots")
    if res.registration is not None:
        out["registered"] = res.registration.location
        out["registrations"] = res.registration.registrations
    return out


def _modules(res, msg, segments):
    """GET /m: the module files. A PUT /m/STEM (a push) goes to agent/modules.py without this module."""
    if len(segments) != 1:
        return _NOT_FOUND, [], b""
    if msg.code != _GET:
        return _METHOD_NOT_ALLOWED, [], b""
    from agent import modules  # forgotten at once unless an upload is in progress

    try:
        return _json({"modules": modules.listing(), "free": modules.free_bytes()})
    finally:
        if getattr(res, "upload", None) is None:
            forget("modules")


async def _restart(res):
    """The board restarts (POST /restart, the master's "restart" action): outputs safe, then machine.reset()."""
    await sleep_ms(300)  # the answer goes out first
    print("agent: restarting, as the master asked")
    from agent import caps

    caps.stop_all(res.capabilities)
    import machine

    machine.reset()
