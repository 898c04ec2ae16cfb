"""A capability's background work: periodic telemetry (TELEMETRY, cfg["telemetry_s"]) and its own run(emit).

Layer: device side, application (part of agent/app.py). Only a board whose capabilities report anything loads
this module (a blind or a relay never does): agent/app.py imports it when it starts such a capability. Events
of run(emit) wait in a bounded queue (_EVENT_SLOTS) for one sender task, made with the first of them.
"""

import asyncio
import json

from agent import coap
from agent.endpoint import RequestError
from agent.port import const, print_exception, sleep_ms

# CoAP numbers (RFC 7252), inlined: agent/coap.py keeps only what the tests use by name
_CHANGED = const(68)
_CONTENT_FORMAT = const(12)
_JSON = const(50)
_POST = const(2)
_URI_PATH = const(11)
_URI_QUERY = const(15)

_EVENT_SLOTS = const(8)  # events of run(emit) waiting to be sent; beyond that the oldest is dropped (and counted)


class Reporter:
    """What one agent sends to the master on its own: POST /t?ep=ID {"cap", "values"}."""

    def __init__(self, agent):
        self.agent = agent
        self.options = coap.path_options(_URI_PATH, "t") + [  # the same for every report: built once
            (_CONTENT_FORMAT, coap.uint(_JSON)),
            (_URI_QUERY, ("ep=" + agent.device_id).encode()),
        ]
        self.events = []  # (capability name, values) from run(emit), sent one after the other
        self.wake = asyncio.Event()  # set by emit(): the sender has work
        self.sender = None  # the one sender task, made with the first run(emit)

    def start(self, cap, every_s):
        """The background tasks of one capability (telemetry every every_s seconds, its run(emit))."""
        tasks = []
        if every_s:
            tasks.append(asyncio.create_task(self._telemetry(cap, every_s)))
        if hasattr(cap.instance, "run"):
            if self.sender is None:
                self.sender = asyncio.create_task(self._sender())
            tasks.append(asyncio.create_task(self._run(cap)))
        return tasks

    def stop(self):
        if self.sender is not None:
            self.sender.cancel()
            self.sender = None

    async def _telemetry(self, cap, every_s):
        while True:
            await sleep_ms(every_s * 1000)
            try:
                values = await cap.instance.read()
            except Exception as exc:  # noqa: BLE001 — a sensor that fails now may answer next time
                print_exception(exc)
                continue
            await self.send(cap.name, values)

    async def _run(self, cap):
        name = cap.name
        stats = self.agent.endpoint.stats

        def emit(values):
            events = self.events
            if len(events) >= _EVENT_SLOTS:
                events.pop(0)  # a burst the master cannot take as fast: the oldest goes, and is counted as lost
                stats["telemetry_lost"] += 1
            events.append((name, values))
            self.wake.set()

        try:
            await cap.instance.run(emit)
        except Exception as exc:  # noqa: BLE001 — the module's background work ended; the board serves on
            print("agent: %s stopped its background work" % cap.name)
            print_exception(exc)

    async def _sender(self):
        """Send what run(emit) queued, oldest first, one at a time (one task, however many events)."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.events:
                name, values = self.events.pop(0)
                await self.send(name, values)

    async def send(self, name, values):
        """POST /t?ep=ID {"cap", "values"} to the master (confirmable: lost telemetry is counted)."""
        agent = self.agent
        stats = agent.endpoint.stats
        registration = agent.registration
        try:
            if registration.master is None or registration.location is None:
                raise RequestError("not registered")
            body = json.dumps({"cap": name, "values": values}).encode()
            response = await agent.endpoint.request(registration.master, _POST, self.options, body)
            if response.code != _CHANGED:
                raise RequestError(coap.code_str(response.code))
            stats["telemetry"] += 1
        except RequestError as exc:
            stats["telemetry_lost"] += 1
            print("agent: telemetry of %s not delivered: %s" % (name, exc))
