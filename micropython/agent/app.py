"""Agent assembly and top loop: config, network join, CoAP endpoint, capabilities, registration.

Layer: device side, top. It wires the other agent modules together and owns the loop that must never die:
an exception is printed (sys.print_exception) and the board keeps serving. Ctrl-C (KeyboardInterrupt — on
the virtual board the runner's stop()) is the orderly stop: outputs safe, registration deleted.
It must not hold protocol or capability logic of its own.
"""

import asyncio
import json
import time

from agent import VERSION, caps, coap
from agent.endpoint import Endpoint, RequestError
from agent.port import print_exception, reset_loop, sleep_ms, sockaddr, udp_socket
from agent.rd import Registration
from agent.resources import Resources

CONFIG_PATH = "config.json"


def load_config(path=CONFIG_PATH):
    with open(path) as f:
        return json.load(f)


def join_network(wifi, timeout_ms=20000):
    """Join the Wi-Fi from the config; return our IP address."""
    import network

    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if not wlan.isconnected():
        wlan.connect(wifi.get("ssid", ""), wifi.get("psk", ""))
        waited = 0
        while not wlan.isconnected():
            if waited >= timeout_ms:
                raise OSError("wifi: cannot join %r" % wifi.get("ssid"))
            time.sleep_ms(100) if hasattr(time, "sleep_ms") else time.sleep(0.1)
            waited += 100
    return wlan.ifconfig()[0]


_MDNS_TIMEOUT_MS = 1000


class Locator:
    """Where the master is: what an mDNS query finds first, else the address in the config.

    config["master"] absent or "mdns": mDNS only (asked again at every attempt). {"host", "port"}: mDNS first,
    falling back to that address — unless "mdns" is false, or the host is a loopback address (a board simulated
    on the master's own machine, where the configured address is the truth and other masters may advertise).
    """

    def __init__(self, config, ip):
        master = config.get("master")
        self.ip = ip
        self.configured = None
        self.mdns = True
        if isinstance(master, dict) and master.get("host"):
            host = master["host"]
            self.configured = sockaddr(host, int(master.get("port", 5683)))
            self.mdns = master.get("mdns", not (host.startswith("127.") or host == "localhost"))
        self.found = None

    async def __call__(self):
        if self.mdns:
            from agent import mdns  # only boards that look for their master pay for the module

            found = await mdns.find(self.ip, _MDNS_TIMEOUT_MS)
            if found is not None:
                if found != self.found:
                    print("mdns: master at %s:%d" % found)
                    self.found = found
                return sockaddr(found[0], found[1])
            if self.configured is None:
                print("mdns: no master answered")
        return self.configured


async def _unpaired(msg, addr):
    """An unpaired board offers nothing but its adoption: every request is 4.04 until it has an identity."""
    return coap.NOT_FOUND, [], b""


def adopt_identity(config, ip, locate, path=CONFIG_PATH):
    """Get an identity by adoption (a person confirms our code); write it into config.json; return the config.

    None when stopped by Ctrl-C before that."""
    from agent import adopt  # paired boards never load it

    sock = udp_socket(ip, int(config.get("listen_port", 5683)))
    endpoint = Endpoint(sock, _unpaired)

    async def adopt_main():
        serving = asyncio.create_task(endpoint.serve())
        try:
            return await adopt.Adoption(endpoint, locate, adopt.board_info(VERSION)).run()
        finally:
            serving.cancel()

    try:
        identity = asyncio.run(adopt_main())
    except KeyboardInterrupt:
        print("agent: stopped before adoption")
        return None
    finally:
        sock.close()
        reset_loop()
    config = adopt.adopted_config(config, identity)
    adopt.save_config(config, path)
    print("adopt: adopted as %s (%s); starting as a paired board" % (config["device_id"], config.get("name")))
    return config


OSCORE_SALT = b"pifleet-oscore-1"  # keeps OSCORE's keys apart from other uses of the board's secret
SEQ_PATH = "oscore.seq"


def security_context(config):
    """The board's OSCORE context with the master (sender: our oscore_id, recipient: the master, id b""), or
    None for a board that was not paired for OSCORE (a test stand-in)."""
    if config.get("oscore_id") is None or not config.get("secret"):
        return None
    from agent import oscore

    store = oscore.FileStore(SEQ_PATH)
    fresh = store.load() == 0  # never sent: nothing of ours can be replayed, the master starts fresh too
    return oscore.Context(
        bytes.fromhex(config["secret"]), OSCORE_SALT, bytes.fromhex(config["oscore_id"]), b"", store=store, fresh=fresh
    )


class Agent:
    def __init__(self, config, ip, locate=None, path=CONFIG_PATH):
        self.config = config
        self.path = path
        self.ip = ip
        self.port = int(config.get("listen_port", 5683))
        stems = config.get("modules", {})
        try:
            # leftovers of an install a power loss interrupted: unfinished uploads, versions no longer named
            caps.remove_unused(config)
        except OSError:
            pass  # no caps/ directory: nothing to tidy
        self.capabilities, failed = caps.load(config.get("caps", {}), stems)
        if failed and config.get("previous"):
            from agent import role  # a version that cannot start: back to the one it replaced

            started, failed = role.fall_back(config, failed, path)
            self.capabilities += started
        self.sock = udp_socket(ip, self.port)
        self.endpoint = Endpoint(self.sock, None, security_context(config))
        self.resources = Resources(config["device_id"], self.capabilities, self.endpoint.stats, failed)
        self.resources.role = config.get("role", "")
        self.resources.apply_role = self.apply_role
        self.endpoint.handler = self.resources.handle
        self.endpoint.stats["telemetry"] = 0
        self.endpoint.stats["telemetry_lost"] = 0
        locate = locate or Locator(config, ip)
        self.registration = Registration(
            self.endpoint,
            locate.configured,
            config,
            self.resources.links(),
            VERSION,
            locate=locate if locate.mdns else None,
        )
        self.resources.registration = self.registration
        self._cap_tasks = {}  # capability name -> its background tasks (telemetry, run(emit))
        self._sends = set()  # telemetry on its way to the master

    async def serve(self):
        print("agent: listening on %s:%d as %s" % (self.ip, self.port, self.config["device_id"]))
        rd = asyncio.create_task(self.registration.run())
        for cap in self.capabilities:
            self._start(cap)
        try:
            await self.endpoint.serve()
        finally:
            rd.cancel()
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
        def emit(values):
            task = asyncio.create_task(self._send(cap.name, values))
            self._sends.add(task)  # referenced until sent
            return task

        try:
            await cap.instance.run(emit)
        except Exception as exc:  # noqa: BLE001 — the module's background work ended; the board serves on
            print("agent: %s stopped its background work" % cap.name)
            print_exception(exc)

    async def _send(self, name, values):
        """POST /t?ep=ID {"cap", "values"} to the master (confirmable: lost telemetry is counted)."""
        stats = self.endpoint.stats
        master = self.registration.master
        try:
            if master is None or self.registration.location is None:
                raise RequestError("not registered")
            options = coap.path_options(coap.URI_PATH, "t")
            options.append((coap.CONTENT_FORMAT, coap.uint(coap.JSON)))
            options.append((coap.URI_QUERY, ("ep=" + self.config["device_id"]).encode()))
            body = json.dumps({"cap": name, "values": values}).encode()
            response = await self.endpoint.request(master, coap.POST, options, body)
            if response.code != coap.CHANGED:
                raise RequestError(coap.code_str(response.code))
            stats["telemetry"] += 1
        except RequestError as exc:
            stats["telemetry_lost"] += 1
            print("agent: telemetry of %s not delivered: %s" % (name, exc))
        finally:
            self._sends.discard(asyncio.current_task())

    # -- a new role at runtime (PUT /role) -------------------------------------------------------------

    async def apply_role(self, body):
        from agent import role  # loaded when first needed: most boards keep their role for months

        try:
            now, replaced, started, config = role.apply(self.capabilities, self.config, body, self.path)
        except role.RoleError as exc:
            # what ran before runs again, set up anew: so is its background work
            for cap in self.capabilities:
                self._cancel(cap)
                self._start(cap)
            return coap.BAD_REQUEST, {"ok": False, "error": str(exc), "field": exc.field}
        for cap in replaced:
            self._cancel(cap)
        self.capabilities = now
        self.config = config
        self.resources.set_capabilities(now)
        self.resources.role = config.get("role", "")
        for cap in started:
            self._start(cap)
        self.registration.changed(self.resources.links(), self.resources.role)
        print("role: now %s: %s" % (config.get("role"), ", ".join(c.stem for c in now)))
        answer = self.resources.describe()
        answer["ok"] = True
        return coap.CHANGED, answer

    async def shutdown(self):
        """Orderly stop: outputs safe first, then tell the master we are gone."""
        caps.stop_all(self.capabilities)
        receiver = asyncio.create_task(self.endpoint.serve())  # to hear the master's answer
        await self.registration.deregister()
        receiver.cancel()
        self.sock.close()


def run():
    """Start the agent and keep it serving until Ctrl-C."""
    config = load_config()
    ip = join_network(config.get("wifi", {}))
    locate = Locator(config, ip)
    if not config.get("device_id"):
        # no identity here (flashed elsewhere, or factory reset): nothing but adoption until a person confirms
        config = adopt_identity(config, ip, locate)
        if config is None:
            return
    agent = Agent(config, ip, locate)
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
