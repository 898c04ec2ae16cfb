"""Changing what the board does while it runs: a new role, new module versions, new configuration (PUT /role).

Layer: device side, application. `PUT /role` {"role", "caps": {name: cfg}, "modules": {name: stem}} (switch())
arrives after the master has pushed every module file it names (agent/modules.py). This module decides how the
switch goes. In place (agent/replace.py, loaded for it): the capabilities it changes are swapped while the board keeps
running. Or by a restart, when swapping in place would take the heap past its ceiling: the new role is written as
the config (the replaced versions kept as the fallback), the board answers {"ok": true, "restart": true,
"reason"}, resets, and loads the new role on a fresh heap at boot (agent/setup.py; a version that cannot start
there goes back to the one before, fall_back). The master keeps the board "updating" until it registers again
(docs/modules.md).

The ceiling is 64/112 of the heap the board has (gc.mem_alloc() + gc.mem_free(): about 112 KB on a plain ESP32, so
64 KiB, the agent's budget in docs/agent.md, "Heap"). What the switch would take: the heap in use now, plus what each
new module takes while it is imported, less what each replaced one takes once loaded, both from the size of their
.mpy files (factors measured with tools/bench/board_heap.py's modules on 32 bits). Under CPython (process targets)
there is no such heap, and the 64-bit virtual ESP32 does not decide so (its heap is 112 KiB x 1.67 for the agent
plus 28 KiB for its Python shims, which a board has in C: the factors above are 32-bit ones): both switch in place,
and restart only on MemoryError or when the switch leaves no room for a datagram (agent/replace.py).
Imported on the first PUT /role, and forgotten after (agent/app.py).
"""

import asyncio
import sys

from agent.port import const, forget, json, os, pause, sleep_ms

# Names: this module is loaded for a switch, often just after a push has filled the interned-string pool (docs/
# agent.md, "Heap"): what it names the board has already (it does not intern a name of its own but its file's),
# so that the pool does not grow by 4.5 KB at the switch.
_BAD_REQUEST = const(128)  # 4.00
_CHANGED = const(68)  # 2.04
_BLOCK1 = const(27)
_REQUEST_ENTITY_TOO_LARGE = const(141)  # 4.13
# Heap per byte of .mpy, in tenths (32 bits): a 10 KB module while it is imported 1.7-2.6 (the most, 27, is used)
# and once it runs 1.3-2.0 (the least, 13: what a replaced one frees at least)
_LOADING = const(27)
_LOADED = const(13)


def answer(code, obj):
    return code, [(12, b"\x32")], json.dumps(obj).encode()  # Content-Format 50: application/json


def save(config, path):
    """config.json replaced whole: written to a new file, renamed over the old one (atomic on littlefs)."""
    tmp = path + ".new"
    with open(tmp, "w") as f:
        json.dump(config, f)
    os.rename(tmp, path)


async def _restart(agent):
    await sleep_ms(300)  # the answer goes out first
    for cap in agent.capabilities:  # outputs safe
        try:
            cap.stop()
        except Exception:  # noqa: BLE001, S110 — keep stopping the others; the reset follows anyway
            pass
    import machine

    machine.reset()


def restart(agent, reason):
    """The answer to a switch whose new role is in config.json and loads on a fresh heap: the board resets."""
    print("role: %s: restarting to load it on a fresh heap" % reason)
    asyncio.create_task(_restart(agent))
    return answer(_CHANGED, {"ok": True, "restart": True, "reason": reason})


def size(stem):
    """Bytes of caps/STEM's file, 0 when there is none or STEM is no module name (agent/caps.py's rule)."""
    if not isinstance(stem, str) or not 0 < len(stem) <= 40:
        return 0
    for b in stem.encode():  # as bytes: each character of a str iterated over would be interned
        if not (48 <= b <= 57 or b == 95 or 97 <= b <= 122):
            return 0
    for name in ("caps/%s.mpy", "caps/%s.py"):
        try:
            return os.stat(name % stem)[6]
        except OSError:
            pass
    return 0


async def switch(agent, msg):
    """PUT /role on the running agent (agent/app.py): (code, options, payload). In place (agent/replace.py), or by
    a restart into the new role when that would take the heap past its ceiling (above)."""
    if msg.option(_BLOCK1) is not None:
        return answer(_REQUEST_ENTITY_TOO_LARGE, {"ok": False, "error": "a role fits one datagram", "field": ""})
    try:
        body = json.loads(msg.payload)
    except ValueError:
        return answer(_BAD_REQUEST, {"ok": False, "error": "payload is not JSON", "field": ""})
    msg = None
    # a command under way ends first (30 s at most): the switch would cut it short, and a move the board runs by
    # itself (agent/plan.py) is not under the master's device lock, which keeps its own runs apart from a switch
    for _ in range(300):
        if None not in agent.resources.executions.values():
            break
        await sleep_ms(100)
    await pause()  # the request's copies are garbage now: before the config is read
    with open(agent.path) as f:
        config = json.load(f)
    # what switching in place would take: the heap in use, plus each new module while it is imported, less each
    # replaced one once loaded (tenths of a byte); None when there is no ESP32's heap to fit (CPython; the 64-bit
    # virtual ESP32, see above) or the role is one agent/replace.py refuses (it says why)
    import gc

    need = None
    wanted = body.get("caps") if isinstance(body, dict) else None
    stems = body.get("modules", {}) if wanted is not None else None
    if hasattr(gc, "mem_free") and sys.maxsize < 1 << 32 and isinstance(wanted, dict) and isinstance(stems, dict):
        need = 0
        by_name = {cap.name: cap for cap in agent.capabilities}
        previous = {}
        for name, cfg in wanted.items():
            stem = stems.get(name, name)
            old = by_name.get(name)
            if old is not None and old.stem == stem and old.cfg == cfg:  # kept as it runs
                if name in config.get("previous", {}):
                    previous[name] = config["previous"][name]
                continue
            loading = size(stem) * _LOADING
            if not loading or not isinstance(cfg, dict):
                need = None
                break
            need += loading
            if old is not None:
                previous[name] = {"stem": old.stem, "cfg": old.cfg}
        if need and isinstance(body.get("role", ""), str):
            for cap in agent.capabilities:  # replaced or dropped: its code leaves the heap first
                if cap.name not in wanted or previous.get(cap.name, {}).get("stem") == cap.stem:
                    need -= size(cap.stem) * _LOADED
            used = gc.mem_alloc()
            total = used + gc.mem_free()
            need = used + need // 10
            if need > total * 64 // 112:
                config = dict(config)
                config["role"] = body.get("role", "")
                config["caps"] = wanted
                config["modules"] = {name: stems.get(name, name) for name in wanted}
                config["previous"] = previous
                for cap in agent.capabilities:
                    agent.stop_work(cap)
                save(config, agent.path)  # the module files it no longer names go at boot (agent/setup.py)
                return restart(
                    agent,
                    "switching in place would take %d of %d bytes of heap (ceiling %d)"
                    % (need, total, total * 64 // 112),
                )
    from agent import replace

    try:
        return await replace.switch(agent, body, config)
    finally:
        forget("replace")


def fall_back(config, failed, path):
    """At boot: a capability whose version cannot start goes back to the version it replaced (agent/replace.py)."""
    from agent import replace

    try:
        return replace.fall_back(config, failed, path)
    finally:
        forget("replace")


async def stop(agent):
    """The agent's orderly stop (Ctrl-C): outputs safe first, then tell the master we are gone."""
    from agent import caps

    caps.stop_all(agent.capabilities)
    receiver = asyncio.create_task(agent.endpoint.serve())  # to hear the master's answer
    await agent.registration.deregister()
    receiver.cancel()
    agent.sock.close()
