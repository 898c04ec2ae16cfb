"""The running agent and its top loop: capabilities' background work (agent/telemetry.py), role switches, stop.

Layer: device side, top. agent/setup.py builds it at boot (and is forgotten then); this module owns the loop
that must never die:
an exception is printed (sys.print_exception) and the board keeps serving. Ctrl-C (KeyboardInterrupt — on
the virtual board the runner's stop()) is the orderly stop: outputs safe, registration deleted.
It must not hold protocol or capability logic of its own. What the board prints goes to the master (agent/log.py).
"""

import asyncio
import time

from agent import log
from agent.port import forget, print_exception, reset_loop


class Agent:
    """The running agent: built by agent/setup.py at boot (start()), it serves until the board stops."""

    def __init__(self, config, path, ip, port, sock, endpoint, resources, registration, capabilities):
        # config.json is read again for a role switch: its secret, Wi-Fi and the rest need no RAM meanwhile
        self.device_id = config["device_id"]
        self.path = path
        self.ip = ip
        self.port = port
        self.sock = sock
        self.endpoint = endpoint
        self.resources = resources
        self.registration = registration
        self.capabilities = capabilities
        self._cap_tasks = {}  # capability name -> its background tasks (telemetry, run(emit))
        self._reporter = None  # agent/telemetry.py's Reporter, made for the first capability that reports
        # the station (STA_IF), pulses without its link, and wifi.fallback_s in pulses (then agent/wifi.py's lost())
        self.wifi = [__import__("network").WLAN(0), 0, (config.get("wifi") or {}).get("fallback_s", 300) * 4]

    async def serve(self):
        print("agent: listening on %s:%d as %s" % (self.ip, self.port, self.device_id))
        rd = asyncio.create_task(self.registration.run())
        logs = asyncio.create_task(log.send(self.endpoint, self.registration, self.device_id))
        for cap in self.capabilities:
            self.start_work(cap)
        try:
            await self.endpoint.serve()
        finally:
            rd.cancel()
            logs.cancel()
            for cap in self.capabilities:
                self.stop_work(cap)
            if self._reporter is not None:
                self._reporter.stop()

    def pulse(self):
        """Every 250 ms (agent/endpoint.py's acker calls it, a loop that never waits on the network): the watchdog
        fed (setup.py started it: a wedged loop starves it, and the board resets), a planned run past its grace
        looked at (agent/plan.py, loaded for it), and the Wi-Fi link: gone for wifi.fallback_s, agent/wifi.py
        resets the board into its access point."""
        import agent

        if agent.WDT:
            agent.WDT.feed()
        res = self.resources
        if res.due and time.time() >= res.due:
            res.due = None  # a round runs (agent/plan.py): no second one meanwhile
            from agent import plan  # due() forgets it when done

            asyncio.create_task(plan.due(self))
        link = self.wifi
        link[1] = 0 if link[0].isconnected() else link[1] + 1
        if link[1] > link[2]:
            from agent import wifi  # lost() forgets it

            wifi.lost(self)

    # -- a capability's background work: periodic telemetry and its own run(emit) (agent/telemetry.py) ------

    def start_work(self, cap):
        every = cap.cfg.get("telemetry_s", 0) if isinstance(cap.cfg, dict) else 0
        every = every if isinstance(every, int) and every > 0 and hasattr(cap.instance, "read") else 0
        if not every and not hasattr(cap.instance, "run"):
            return  # nothing to report: the telemetry code is never loaded
        if self._reporter is None:
            from agent.telemetry import Reporter

            self._reporter = Reporter(self)
        self._cap_tasks[cap.name] = self._reporter.start(cap, every)

    def stop_work(self, cap):
        for task in self._cap_tasks.pop(cap.name, ()):
            task.cancel()

    # -- a new role at runtime (PUT /role) -------------------------------------------------------------

    async def apply_role(self, msg):
        """PUT /role: (code, options, payload). The switch itself is agent/role.py's, loaded for it and forgotten after:
        most boards keep their role for months."""
        from agent import role

        try:
            return await role.switch(self, msg)
        finally:
            forget("role")
            forget("caps")

    async def shutdown(self):
        """Orderly stop: outputs safe first, then tell the master we are gone (agent/role.py)."""
        from agent import role

        await role.stop(self)


def start():
    """Build the agent from config.json (joining the network, and adopting first when the board has no
    identity); None when stopped before adoption. The code that does it is dropped from the heap once done."""
    from agent import setup

    log.install()  # from the first line on, what the board prints is kept for the master
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
