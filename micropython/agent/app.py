"""The running agent and its top loop: capabilities' background work, telemetry, role switches, orderly stop.

Layer: device side, top. agent/setup.py builds it at boot (and is forgotten then); this module owns the loop
that must never die:
an exception is printed (sys.print_exception) and the board keeps serving. Ctrl-C (KeyboardInterrupt — on
the virtual board the runner's stop()) is the orderly stop: outputs safe, registration deleted.
It must not hold protocol or capability logic of its own.
"""

import asyncio
import json
import time

from agent import coap
from agent.endpoint import RequestError
from agent.port import const, forget, print_exception, reset_loop, sleep_ms

# CoAP numbers (RFC 7252, 7959), inlined: agent/coap.py keeps only what the tests use by name
_BAD_REQUEST = const(128)
_CHANGED = const(68)
_CONTENT_FORMAT = const(12)
_JSON = const(50)
_POST = const(2)
_URI_PATH = const(11)
_URI_QUERY = const(15)

_EVENT_SLOTS = const(8)  # events of run(emit) waiting to be sent; beyond that the oldest is dropped (and counted)


class Agent:
    """The running agent: built by agent/setup.py at boot (start()), it serves until the board stops."""

    def __init__(self, config, path, ip, port, sock, endpoint, resources, registration, capabilities):
        # config.json is read again for a role switch: its secret, Wi-Fi and the rest need no RAM meanwhile
        self.device_id = config["device_id"]
        # POST /t?ep=ID with JSON: the options of every telemetry report, built once
        self._telemetry_options = coap.path_options(_URI_PATH, "t") + [
            (_CONTENT_FORMAT, coap.uint(_JSON)),
            (_URI_QUERY, ("ep=" + self.device_id).encode()),
        ]
        self.path = path
        self.ip = ip
        self.port = port
        self.sock = sock
        self.endpoint = endpoint
        self.resources = resources
        self.registration = registration
        self.capabilities = capabilities
        resources.apply_role = self.apply_role
        resources.registration = registration
        endpoint.handler = resources.handle
        endpoint.stats["telemetry"] = 0
        endpoint.stats["telemetry_lost"] = 0
        self._cap_tasks = {}  # capability name -> its background tasks (telemetry, run(emit))
        self._events = []  # (capability name, values) from run(emit), sent one after the other by _sender
        self._wake = asyncio.Event()  # set by emit(): the sender has work

    async def serve(self):
        print("agent: listening on %s:%d as %s" % (self.ip, self.port, self.device_id))
        rd = asyncio.create_task(self.registration.run())
        sender = asyncio.create_task(self._sender())
        for cap in self.capabilities:
            self._start(cap)
        try:
            await self.endpoint.serve()
        finally:
            rd.cancel()
            sender.cancel()
            for cap in self.capabilities:
                self._cancel(cap)

    # -- a capability's background work: periodic telemetry and its own run(emit) ------------------------

    def _start(self, cap):
        tasks = []
        every = cap.cfg.get("telemetry_s", 0) if isinstance(cap.cfg, dict) else 0
        if isinstance(every, int) and every > 0 and hasattr(cap.instance, "read"):
            tasks.append(asyncio.create_task(self._telemetry(cap, every)))
        if hasattr(cap.instance, "run"):
            tasks.append(asyncio.create_task(self._run(cap)))
        self._cap_tasks[cap.name] = tasks

    def _cancel(self, cap):
        for task in self._cap_tasks.pop(cap.name, ()):
            task.cancel()

    async def _telemetry(self, cap, every_s):
        while True:
            await sleep_ms(every_s * 1000)
            try:
                values = await cap.instance.read()
            except Exception as exc:  # noqa: BLE001 — a sensor that fails now may answer next time
                print_exception(exc)
                continue
            await self._send(cap.name, values)

    async def _run(self, cap):
        name = cap.name

        def emit(values):
            events = self._events
            if len(events) >= _EVENT_SLOTS:
                events.pop(0)  # a burst the master cannot take as fast: the oldest goes, and is counted as lost
                self.endpoint.stats["telemetry_lost"] += 1
            events.append((name, values))
            self._wake.set()

        try:
            await cap.instance.run(emit)
        except Exception as exc:  # noqa: BLE001 — the module's background work ended; the board serves on
            print("agent: %s stopped its background work" % cap.name)
            print_exception(exc)

    async def _sender(self):
        """Send what run(emit) queued, oldest first, one at a time (one task, however many events)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._events:
                name, values = self._events.pop(0)
                await self._send(name, values)

    async def _send(self, name, values):
        """POST /t?ep=ID {"cap", "values"} to the master (confirmable: lost telemetry is counted)."""
        stats = self.endpoint.stats
        master = self.registration.master
        try:
            if master is None or self.registration.location is None:
                raise RequestError("not registered")
            options = self._telemetry_options
            body = json.dumps({"cap": name, "values": values}).encode()
            response = await self.endpoint.request(master, _POST, options, body)
            if response.code != _CHANGED:
                raise RequestError(coap.code_str(response.code))
            stats["telemetry"] += 1
        except RequestError as exc:
            stats["telemetry_lost"] += 1
            print("agent: telemetry of %s not delivered: %s" % (name, exc))

    # -- a new role at runtime (PUT /role) -------------------------------------------------------------

    async def apply_role(self, body):
        from agent import role  # loaded when needed, forgotten after: most boards keep their role for months

        try:
            with open(self.path) as f:
                config = json.load(f)
            now, replaced, started, config = role.apply(self.capabilities, config, body, self.path)
        except role.RoleError as exc:
            # what ran before runs again, set up anew: so is its background work
            for cap in self.capabilities:
                self._cancel(cap)
                self._start(cap)
            return _BAD_REQUEST, {"ok": False, "error": str(exc), "field": exc.field}
        finally:
            forget("role")
            forget("caps")
        for cap in replaced:
            self._cancel(cap)
        self.capabilities = now
        self.resources.set_capabilities(now)
        self.resources.role = config.get("role", "")
        for cap in started:
            self._start(cap)
        self.registration.changed(self.resources.links(), self.resources.role)
        print("role: now %s: %s" % (config.get("role"), ", ".join(c.stem for c in now)))
        answer = self.resources.describe()
        answer["ok"] = True
        return _CHANGED, answer

    async def shutdown(self):
        """Orderly stop: outputs safe first, then tell the master we are gone."""
        from agent import caps

        caps.stop_all(self.capabilities)
        receiver = asyncio.create_task(self.endpoint.serve())  # to hear the master's answer
        await self.registration.deregister()
        receiver.cancel()
        self.sock.close()


def start():
    """Build the agent from config.json (joining the network, and adopting first when the board has no
    identity); None when stopped before adoption. The code that does it is dropped from the heap once done."""
    from agent import setup

    try:
        return setup.start()
    finally:
        forget("setup")


def run():
    """Start the agent and keep it serving until Ctrl-C."""
    agent = start()
    if agent is None:
        return
    while True:
        try:
            asyncio.run(agent.serve())
        except KeyboardInterrupt:
            print("agent: stopping")
            reset_loop()
            asyncio.run(agent.shutdown())
            print("agent: stopped")
            return
        except Exception as exc:  # noqa: BLE001 — the top loop keeps the board serving
            print_exception(exc)
            reset_loop()
            time.sleep(1)
