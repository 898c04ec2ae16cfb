"""The board's CoAP resources: /.well-known/core, /cap, /stats, /a/CAP/COMMAND, /m (modules) and /role.

Layer: device side, application. It turns a request Message into (code, options, payload) for the
endpoint. It does not touch the socket, and it never lets a handler's exception escape: a broken command
answers 5.00. Execution ids (eid) of the last 16 commands are remembered with their answer (code and JSON bytes,
None while running), so a retried command runs once.
"""

import json

from agent import coap
from agent.port import const, forget, mem_info, print_exception, sleep_ms, ticks_diff, ticks_ms
from agent.schema import validate

# CoAP numbers (RFC 7252, 7959), inlined: agent/coap.py keeps only what the tests use by name
_ACCEPT = const(17)
_BAD_OPTION = const(130)
_BAD_REQUEST = const(128)
_BLOCK1 = const(27)
_BLOCK2 = const(23)
_CHANGED = const(68)
_CONTENT = const(69)
_CONTENT_FORMAT = const(12)
_GET = const(1)
_INTERNAL_ERROR = const(160)
_JSON = const(50)
_LINK_FORMAT = const(40)
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

_EID_SLOTS = const(16)
_DUPLICATE_POLL_MS = const(50)  # how often a retried command looks whether its first run has finished
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
_LINK_OPT = [(_CONTENT_FORMAT, coap.uint(_LINK_FORMAT))]


def _json(code, obj):
    return code, _JSON_OPT, json.dumps(obj).encode()


class Resources:
    def __init__(self, device_id, capabilities, endpoint_stats, failed_caps=()):
        self.device_id = device_id
        self.capabilities = capabilities
        self.endpoint_stats = endpoint_stats
        self.failed_caps = list(failed_caps)
        self._by_name = {cap.name: cap for cap in capabilities}
        self._executions = {}
        self._eid_order = []
        self._booted = ticks_ms()
        self.registration = None  # set by the agent: shown in /stats
        self.role = ""
        self.apply_role = None  # set by the agent: coroutine (body) -> (code, answer)
        self.upload = None  # agent.modules.Upload, made at the first module upload
        self._links = None  # links() as bytes, until the capabilities change

    def links(self):
        """Link-format description of what this board offers (RFC 6690) as bytes, also sent when registering;
        built once for each set of capabilities."""
        if self._links is None:
            parts = ["</cap>;ct=50", "</stats>;ct=50"]
            for cap in self.capabilities:
                for command in cap.commands:
                    parts.append('</a/%s/%s>;rt="pifleet.cmd";ct=50' % (cap.name, command))
            self._links = ",".join(parts).encode()
        return self._links

    async def handle(self, msg, addr):
        for number, _ in msg.options:
            if number & 1 and number not in _KNOWN:
                return _BAD_OPTION, [], b""
        path = msg.path()
        if path == ".well-known/core":
            if msg.code != _GET:
                return _METHOD_NOT_ALLOWED, [], b""
            return _CONTENT, _LINK_OPT, self.links()
        if path == "cap":
            if msg.code != _GET:
                return _METHOD_NOT_ALLOWED, [], b""
            return _json(_CONTENT, self.describe())
        if path == "stats":
            if msg.code != _GET:
                return _METHOD_NOT_ALLOWED, [], b""
            return _json(_CONTENT, self.stats())
        segments = path.split("/")
        if segments[0] == "m":
            return self._modules(msg, segments)
        if path == "role":
            if msg.code != _PUT:
                return _METHOD_NOT_ALLOWED, [], b""
            if msg.option(_BLOCK1) is not None:
                return _json(_REQUEST_ENTITY_TOO_LARGE, {"ok": False, "error": "a role fits one datagram", "field": ""})
            try:
                body = json.loads(msg.payload)
            except ValueError:
                return _json(_BAD_REQUEST, {"ok": False, "error": "payload is not JSON", "field": ""})
            code, answer = await self.apply_role(body)
            return _json(code, answer)
        if len(segments) == 3 and segments[0] == "a":
            if msg.code != _POST:
                return _METHOD_NOT_ALLOWED, [], b""
            return await self._command(segments[1], segments[2], msg.payload)
        return _NOT_FOUND, [], b""

    def _modules(self, msg, segments):
        from agent import modules  # loaded for a module push, forgotten when no upload is in progress

        try:
            if len(segments) == 1:
                if msg.code != _GET:
                    return _METHOD_NOT_ALLOWED, [], b""
                return _json(_CONTENT, {"modules": modules.listing(), "free": modules.free_bytes()})
            if len(segments) != 2:
                return _NOT_FOUND, [], b""
            if msg.code != _PUT:
                return _METHOD_NOT_ALLOWED, [], b""
            query = [v.decode() for v in msg.option_values(_URI_QUERY)]
            if self.upload is None:
                self.upload = modules.Upload()
            return self.upload.put(segments[1], query, msg)
        finally:
            if self.upload is None or self.upload.stem is None:
                self.upload = None
                forget("modules")
                forget("caps")

    def set_capabilities(self, capabilities, failed=()):
        self.capabilities = capabilities
        self._links = None
        self.failed_caps = list(failed)
        self._by_name = {cap.name: cap for cap in capabilities}

    def describe(self):
        return {
            "device": self.device_id,
            "role": self.role,
            "caps": [
                {"name": c.name, "version": c.version, "module": c.stem, "commands": c.commands}
                for c in self.capabilities
            ],
            "failed": [{"name": name, "error": error} for name, error in self.failed_caps],
        }

    def stats(self):
        alloc, free = mem_info()
        out = dict(self.endpoint_stats)
        out["mem_alloc"] = alloc
        out["mem_free"] = free
        out["uptime_ms"] = ticks_diff(ticks_ms(), self._booted)
        out["executions"] = len(self._executions)
        out["failed_caps"] = [name for name, _ in self.failed_caps]
        if self.registration is not None:
            out["registered"] = self.registration.location
            out["registrations"] = self.registration.registrations
        return out

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
        handler = cap.handler(command) if cap is not None else None
        if handler is None:
            return _json(_NOT_FOUND, {"eid": eid, "ok": False, "error": "no command %s/%s" % (cap_name, command)})
        params = body.get("params", {})
        problem = validate(cap.commands[command], params)
        if problem is not None:
            field, message = problem
            return _json(_BAD_REQUEST, {"eid": eid, "ok": False, "error": field + " " + message, "field": field})

        if eid in self._executions:
            # A retried command: never run it twice; answer with what the first run answered (rare: no Event)
            while self._executions.get(eid, ()) is None:
                await sleep_ms(_DUPLICATE_POLL_MS)
            done = self._executions.get(eid)
            if not done:
                return _json(_INTERNAL_ERROR, {"eid": eid, "ok": False, "error": "first run forgotten"})
            answer = json.loads(done[1])
            answer["duplicate"] = True
            return _json(done[0], answer)

        self._remember(eid)
        try:
            result = await handler(**params)
            code, body = _CHANGED, {"eid": eid, "ok": True, "result": result}
        except ValueError as exc:
            # The capability refused a value as unsafe (beyond what the schema says).
            code, body = _BAD_REQUEST, {"eid": eid, "ok": False, "error": str(exc), "field": "params"}
        except Exception as exc:  # noqa: BLE001 — a failing handler is an answer, not a crash
            print_exception(exc)
            code, body = _INTERNAL_ERROR, {"eid": eid, "ok": False, "error": repr(exc)}
        data = json.dumps(body).encode()
        if eid in self._executions:
            self._executions[eid] = (code, data)
        return code, _JSON_OPT, data

    def _remember(self, eid):
        self._executions[eid] = None
        self._eid_order.append(eid)
        if len(self._eid_order) > _EID_SLOTS:
            self._executions.pop(self._eid_order.pop(0), None)
