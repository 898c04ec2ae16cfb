"""A role switch in place: the capabilities it changes stopped, their old code out of the heap, the new imported.

Layer: device side, application. agent/role.py (PUT /role) hands a switch over to this module when it fits the heap
(it restarts the board into the new role otherwise): capabilities whose stem and configuration are unchanged keep
running untouched. The others are stopped first (a new version may take over the same pins), then the new ones are
imported, set up and self-checked. If any of them fails, the new ones are stopped and the old ones set up again:
the board goes back to what it ran, stays online, and answers with the error (the files of the versions that
cannot run are deleted). One exception: a new module that fails with MemoryError may only lack one contiguous
piece of a heap that a long run has fragmented; so may one that loads but leaves no piece the next datagram needs
(_DATAGRAM). Then the board writes the new role as its config (the replaced versions kept as the fallback), answers that
it restarts, and loads it on a fresh heap at boot; a version that cannot start there goes back to the one before
(fall_back), as after any push. Only when all new ones run is
config.json replaced: it is written to a new file and renamed over the old one (atomic on littlefs), so a power
loss at any point boots the old role or the new one, never neither.
Module files no longer named by the config are deleted last, except each replaced version, which stays (as
config["previous"]) until the next change: a new version that runs now but cannot start at a later boot makes
the board go back to it (fall_back) and say so. Imported for an in-place switch, or at a boot where a module
failed (agent/role.py's fall_back), and forgotten after.
"""

from agent import caps, port
from agent.port import collect, const, forget, print_exception
from agent.role import save as save_config

_DATAGRAM = const(1280)  # agent/endpoint.py's _MAX_DATAGRAM: what recvfrom takes for each


class RoleError(Exception):
    def __init__(self, message, field):
        super().__init__(message)
        self.field = field


class Restart(Exception):
    """The new role is in config.json, but only a fresh heap can load it (switch() restarts the board)."""


def _checked(body):
    if not isinstance(body, dict):
        raise RoleError("the role must be a JSON object", "")
    wanted = body.get("caps")
    stems = body.get("modules", {})
    if not isinstance(wanted, dict) or not all(isinstance(c, dict) for c in wanted.values()):
        raise RoleError("caps must map capability names to configuration objects", "caps")
    if not isinstance(stems, dict):
        raise RoleError("modules must map capability names to module files", "modules")
    for name in wanted:
        stem = stems.get(name, name)
        if not isinstance(stem, str) or not caps.valid_stem(stem):
            raise RoleError("%r is not a module file name" % stem, "modules." + name)
        if not caps.exists(stem):
            raise RoleError("module %s is not on the board (push it first)" % stem, "modules." + name)
    role = body.get("role", "")
    if not isinstance(role, str):
        raise RoleError("role must be a string", "role")
    return role, wanted, stems


async def switch(agent, body, config):
    """The in-place part of agent/role.py's switch(): (code, options, payload)."""
    from agent import role

    for cap in agent.capabilities:
        agent.stop_work(cap)
    try:
        now, _, _, config = await apply(agent.capabilities, config, body, agent.path)
    except Restart as exc:
        return role.restart(agent, str(exc))
    except RoleError as exc:
        for cap in agent.capabilities:  # what ran before runs again, set up anew: so is its background work
            agent.start_work(cap)
        return role.answer(128, {"ok": False, "error": str(exc), "field": exc.field})  # 4.00
    resources = agent.resources
    from agent import admin  # the links (set_capabilities) and the answer: imported once, forgotten below

    agent.capabilities = now
    resources.set_capabilities(now)
    resources.role = config.get("role", "")
    for cap in now:
        agent.start_work(cap)
    await port.pause()  # what the switch left is garbage now: collect before the answer is made
    print("role: now %s: %s" % (config.get("role"), ", ".join(c.stem for c in now)))
    answer = admin.describe(resources)
    forget("admin")
    answer["ok"] = True
    answer = role.answer(68, answer)  # 2.04
    # the registration's links and role updated (agent/register.py's relink): it starts once this answer is on its way
    changed(agent.registration, resources.links, resources.role)
    return answer


def changed(reg, links, role):
    """What the board offers changed (a role switch in place): the registration's links and role are updated at
    once (agent/register.py's relink; its code is loaded for that, not for this too)."""
    reg.links = links
    reg.query = [(k, role if k == "role" else v) for k, v in reg.query]
    import agent

    if getattr(agent, "safe", None):  # a role that starts ends safe mode: the push repaired the board
        print("agent: safe mode ends: role %s runs" % role)
        agent.safe = None
    reg.relink = True  # the links update, or the registration under way (agent/register.py sends them after it)
    if reg._wake is not None:
        reg._wake.set()


async def apply(current, config, body, path):
    """Switch from the capabilities `current` to the role in `body`.

    Returns (capabilities now running, the ones that were replaced, the ones started, new config).
    Raises RoleError (nothing changed, or everything restored) when the role cannot run. Between its phases
    (old code gone, each new module in, config written) it collects (port.pause): the switch is the heap's
    high point, and what a phase left behind is garbage before the next one allocates.
    """
    role, wanted, stems = _checked(body)
    by_name = {cap.name: cap for cap in current}
    keep, todo = [], []
    for name, cfg in wanted.items():
        stem = stems.get(name, name)
        old = by_name.get(name)
        if old is not None and old.stem == stem and old.cfg == cfg:
            keep.append(old)
        else:
            todo.append((name, stem, cfg))
    replaced = [cap for cap in current if cap not in keep]
    caps.stop_all(replaced)  # outputs safe, and their pins free for the new versions
    # the replaced code leaves the heap before the new comes in (the switch is the heap's high point); if the
    # new cannot run, the old is imported again from its file, which stays until the switch has succeeded
    for old in replaced:
        old.module = old.instance = None
        caps.unload(old.stem)
    old = None
    await port.pause()
    started = []
    fresh = None
    try:
        for name, stem, cfg in todo:
            try:
                started.append(caps.load_one(name, stem, cfg, check=True))
                await port.pause()
                # and the heap it leaves must still take the next datagram: agent/port.py's recvfrom needs 1,280
                # contiguous bytes (and on the unix port the datagram's copy). A switch that left no such piece
                # (free memory in holes under 1,280 bytes) made the board spin on recvfrom's MemoryError for good,
                # its watchdog fed (module_push.py --rollout 20: boards stopped reading their socket)
                try:
                    _ = bytearray(_DATAGRAM), bytearray(_DATAGRAM // 2)
                except MemoryError:
                    raise MemoryError("it left no room for a datagram")
                _ = None
            except MemoryError as exc:
                # no contiguous piece left for it: a fresh heap may have one (the boot decides, see above)
                fresh = "%s (%s) did not fit in this heap: %r" % (name, stem, exc)
                raise RoleError(fresh, "caps." + name)
            except Exception as exc:  # noqa: BLE001 — whatever a module raises, the board goes back
                print("role: %s (%s) cannot run:" % (name, stem))
                print_exception(exc)
                raise RoleError("%s (%s) cannot run: %r" % (name, stem, exc), "caps." + name)
    except RoleError:
        if fresh is not None:
            caps.stop_all(started)
            for cap in started:
                caps.unload(cap.stem)
            started = cap = None
            modules = {name: stems.get(name, name) for name in wanted}
            _save(config, role, wanted, modules, keep, replaced, path)
            raise Restart(fresh)
        caps.stop_all(started)
        for cap in started:
            caps.unload(cap.stem)
        started = cap = None  # the new code may go before the old comes back
        for old in replaced:  # the previous versions, as they were
            try:
                back = caps.load_one(old.name, old.stem, old.cfg)
                old.module, old.instance = back.module, back.instance
            except Exception as exc:  # noqa: BLE001 — it ran before; report, keep restoring the others
                print_exception(exc)
        caps.remove_unused(config)  # the versions that cannot run are not kept
        collect()
        raise
    running = {cap.name: cap for cap in keep + started}
    now = [running[name] for name in wanted]
    new_config = _save(config, role, wanted, {cap.name: cap.stem for cap in now}, keep, replaced, path)
    await port.pause()
    return now, replaced, started, new_config


def _save(config, role, wanted, modules, keep, replaced, path):
    """Write the new role as config.json and delete the module files it no longer names. What each replaced
    capability ran before stays on the board until the next change: if the new version cannot start at a later
    boot, the board goes back to it (fall_back)."""
    kept = [cap.name for cap in keep]
    previous = {name: entry for name, entry in config.get("previous", {}).items() if name in kept}
    for old in replaced:
        if old.name in wanted:
            previous[old.name] = {"stem": old.stem, "cfg": old.cfg}
    new_config = dict(config)
    new_config["role"] = role
    new_config["caps"] = wanted
    new_config["modules"] = modules
    new_config["previous"] = previous
    save_config(new_config, path)
    caps.remove_unused(new_config)
    return new_config


def fall_back(config, failed, path):
    """At boot: a capability whose version cannot start goes back to the version it replaced, if the board
    still has it. The config then names that version (the next boot starts it directly) and the failure is
    still reported, so the master knows. Returns (capabilities started, failures as reported)."""
    previous = config.get("previous", {})
    started, reported = [], []
    for name, error in failed:
        entry = previous.get(name)
        if entry is None or not caps.exists(entry["stem"]):
            reported.append((name, error))
            continue
        bad = config.get("modules", {}).get(name, name)
        try:
            started.append(caps.load_one(name, entry["stem"], entry["cfg"], check=True))
        except Exception as exc:  # noqa: BLE001 — then it stays failed, as without a previous version
            print_exception(exc)
            reported.append((name, error))
            continue
        print("role: %s went back to %s: %s cannot start" % (name, entry["stem"], bad))
        reported.append((name, "%s cannot start at boot, running %s again: %s" % (bad, entry["stem"], error)))
        config["caps"][name] = entry["cfg"]
        config.setdefault("modules", {})[name] = entry["stem"]
        del previous[name]
    if started:
        save_config(config, path)
        caps.remove_unused(config)
    return started, reported
