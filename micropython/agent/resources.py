"""The board's CoAP resources: /a/CAP/COMMAND and /role here; /.well-known/core, /cap, /stats and /m (modules)
in agent/admin.py, loaded only while one of them is asked for.

Layer: device side, application. It turns a request Message into (code, options, payload) for the
endpoint. It does not touch the socket, and it never lets a handler's exception escape: a broken command
answers 5.00. Execution ids (eid) of the last 8 commands are remembered with their answer (code and JSON bytes,
None while running), so a retried command runs once; those of commands with an effect are also written to a file
before they act (agent/executions.py), so a command sent again after a power cut or a watchdog reset runs once too.
"""

import json

from agent import coap
from agent.port import const, forget, print_exception, sleep_ms, ticks_ms
from agent.schema import validate

# CoAP numbers (RFC 7252, 7959), inlined: agent/coap.py keeps only what the tests use by name
_ACCEPT = const(17)
_BAD_OPTION = const(130)
_BAD_REQUEST = const(128)
_BLOCK1 = const(27)
_BLOCK2 = const(23)
_CHANGED = const(68)
_CONTENT_FORMAT = const(12)
_INTERNAL_ERROR = const(160)
_JSON = const(50)
_METHOD_NOT_ALLOWED = const(133)
_NOT_FOUND = const(132)
_OBSERVE = const(6)
_POST = const(2)
_PUT = const(3)
_REQUEST_ENTITY_TOO_LARGE = const(141)
_SIZE1 = const(60)
_SIZE2 = const(28)
_URI_HOST = const(3)
_URI_PATH = const(11)
_URI_PORT = const(7)
_URI_QUERY = const(15)

_EID_SLOTS = const(8)  # the master sends one command per board at a time: 8 cover its retries with room
_DUPLICATE_POLL_MS = const(50)  # how often a retried command looks whether its first run has finished
# A role/group run's instant ("due") further ahead than this is a clock that is off (no master's time since the
# power came, or drifted): act at once. The master's leads are at most a second.
_DUE_WAIT_MS = const(2000)
# Options we understand or may safely ignore; any other critical (odd) option gets 4.02 (RFC 7252 §5.4.1).
_KNOWN = (
    _URI_HOST,
    _URI_PORT,
    _URI_PATH,
    _CONTENT_FORMAT,
    _URI_QUERY,
    _ACCEPT,
    _BLOCK2,
    _BLOCK1,
    _SIZE2,
    _SIZE1,
    _OBSERVE,
)
_JSON_OPT = [(_CONTENT_FORMAT, coap.uint(_JSON))]


def _json(code, obj):
    return code, _JSON_OPT, json.dumps(obj).encode()


class Capability:
    """A running capability (made by agent/caps.py). Its class lives here, in a module the board keeps: an
    instance of a class from agent/caps.py would keep that whole module in the heap after it is forgotten."""

    __slots__ = ("name", "version", "commands", "module", "instance", "stem", "cfg")

    def __init__(self, module, instance, stem, cfg):
        self.module = module
        self.instance = instance
        self.stem = stem  # the file it came from: caps/STEM.mpy (NAME_HASHPREFIX when the master pushed it)
        self.cfg = cfg
        self.name = module.NAME
        self.version = str(module.VERSION)
        self.commands = module.COMMANDS

    def stop(self):
        stop = getattr(self.module, "stop", None)
        if stop is not None:
            stop(self.instance)


class Resources:
    def __init__(self, device_id, capabilities, endpoint_stats, failed_caps=()):
        self.device_id = device_id
        self.endpoint_stats = endpoint_stats
        self.set_capabilities(capabilities, failed_caps)
        self.executions = {}
        self._eid_order = []
        self.booted = ticks_ms()  # uptime in /stats
        self.registration = None  # set by the agent: shown in /stats
        self.role = ""
        self.apply_role = None  # set by the agent: coroutine (PUT /role request) -> (code, options, payload)

    async def handle(self, msg, addr):
        for number, _ in msg.options:
            if number & 1 and number not in _KNOWN:
                return _BAD_OPTION, [], b""
        path = msg.path()
        segments = path.split("/")
        if len(segments) == 3 and segments[0] == "a":
            if msg.code != _POST:
                return _METHOD_NOT_ALLOWED, [], b""
            # a round of the board's own planned runs holds the board (agent/plan.py), as a run holds it on the
            # master: a command waits for it, and does not cut its move short (found by tools/bench/chaos.py)
            while getattr(self, "due", 0) is None:
                await sleep_ms(_DUPLICATE_POLL_MS)
            return await self._command(segments[1], segments[2], msg.payload)
        if path == "role":
            if msg.code != _PUT:
                return _METHOD_NOT_ALLOWED, [], b""
            return await self.apply_role(msg)  # agent/role.py's switch()
        # a block of a module push goes straight to agent/modules.py, the next block of an update to agent/ota.py:
        # loading admin for each block left ~4 KB of garbage per block
        if segments[0] == "m" and msg.code == _PUT:
            from agent import modules

            return await modules.handle(self, msg, segments)
        if path == "ota" and getattr(self, "ota", None):
            return self.ota.block(self, msg, segments)
        # the rest is asked for rarely (after a registration, by a person, for a push): loaded for the request
        from agent import admin

        try:
            return admin.handle(self, msg, path, segments)
        finally:
            forget("admin")

    def set_capabilities(self, capabilities, failed=()):
        from agent import admin  # at boot and at a role switch only

        self.capabilities = capabilities
        self.links = admin.links(capabilities)  # what /.well-known/core and the registration say (RFC 6690)
        forget("admin")
        self.failed_caps = list(failed)
        self._by_name = {cap.name: cap for cap in capabilities}

    async def _command(self, cap_name, command, payload):
        try:
            body = json.loads(payload or b"{}")
        except ValueError:
            return _json(_BAD_REQUEST, {"ok": False, "error": "payload is not JSON", "field": ""})
        if not isinstance(body, dict):
            return _json(_BAD_REQUEST, {"ok": False, "error": "payload must be an object", "field": ""})
        eid = body.get("eid")
        if not isinstance(eid, str) or not eid:
            return _json(_BAD_REQUEST, {"ok": False, "error": "eid must be a non-empty string", "field": "eid"})
        ep = body.get("ep")
        if ep is not None and ep != self.device_id:
            # Meant for another board (addresses get reused when boards come and go): act on nothing.
            return _json(
                _BAD_REQUEST,
                {"eid": eid, "ok": False, "field": "ep", "error": "this is %s, not %s" % (self.device_id, ep)},
            )
        cap = self._by_name.get(cap_name)
        handler = getattr(cap.instance, command, None) if cap is not None and command in cap.commands else None
        if handler is None:
            return _json(_NOT_FOUND, {"eid": eid, "ok": False, "error": "no command %s/%s" % (cap_name, command)})
        params = body.get("params", {})
        problem = validate(cap.commands[command], params)
        if problem is not None:
            field, message = problem
            return _json(_BAD_REQUEST, {"eid": eid, "ok": False, "error": field + " " + message, "field": field})

        if eid in self.executions:
            # A retried command: never run it twice; answer with what the first run answered (rare: no Event)
            while self.executions.get(eid, ()) is None:
                await sleep_ms(_DUPLICATE_POLL_MS)
            done = self.executions.get(eid)
            if not done:
                return _json(_INTERNAL_ERROR, {"eid": eid, "ok": False, "error": "first run forgotten"})
            answer = json.loads(done[1])
            answer["duplicate"] = True
            return _json(done[0], answer)

        from agent import executions  # its eid in a file first: at most once across resets too

        forget("executions")
        done = executions.load(eid, command)
        if done:
            return done
        self._remember(eid)
        try:
            due = body.get("due") or 0
            if due:
                # a role/group run's instant (Unix ms, the master's clock): its boards act together. ms to go by this
                # board's clock (the RTC holds the master's time; ticks time the wait); modulo a day, because the
                # ESP32 counts from 2000, the unix port from 1970, and a day's ms are a small int on 32 bits
                from agent.port import time

                due = (due - time.time_ns() // 1000000 + 43200000) % 86400000 - 43200000
                if 0 < due < _DUE_WAIT_MS:
                    await sleep_ms(due)
                    due = 0
            result = await handler(**params)
            if due and isinstance(result, dict):
                result["due"] = due  # not waited for: late by -due ms (acted at once), or this board's clock is off
            code, body = _CHANGED, {"eid": eid, "ok": True, "result": result}
        except ValueError as exc:
            # The capability refused a value as unsafe (beyond what the schema says).
            code, body = _BAD_REQUEST, {"eid": eid, "ok": False, "error": str(exc), "field": "params"}
        except Exception as exc:  # noqa: BLE001 — a failing handler is an answer, not a crash
            print_exception(exc)
            code, body = _INTERNAL_ERROR, {"eid": eid, "ok": False, "error": repr(exc)}
        data = json.dumps(body).encode()
        if eid in self.executions:
            self.executions[eid] = (code, data)
        executions.save(eid, command, code, data)
        return code, _JSON_OPT, data

    def _remember(self, eid):
        self.executions[eid] = None
        self._eid_order.append(eid)
        if len(self._eid_order) > _EID_SLOTS:
            self.executions.pop(self._eid_order.pop(0), None)
