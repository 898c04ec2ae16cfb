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
from agent.endpoint import Endpoint
from agent.port import print_exception, reset_loop, sockaddr, udp_socket
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


class Agent:
    def __init__(self, config, ip, locate=None):
        self.config = config
        self.ip = ip
        self.port = int(config.get("listen_port", 5683))
        self.capabilities, failed = caps.load(config.get("caps", {}))
        self.sock = udp_socket(ip, self.port)
        self.endpoint = Endpoint(self.sock, None)
        self.resources = Resources(config["device_id"], self.capabilities, self.endpoint.stats, failed)
        self.endpoint.handler = self.resources.handle
        locate = locate or Locator(config, ip)
        self.registration = Registration(self.endpoint, locate.configured, config, self.resources.links(), VERSION,
                                         locate=locate if locate.mdns else None)
        self.resources.registration = self.registration

    async def serve(self):
        print("agent: listening on %s:%d as %s" % (self.ip, self.port, self.config["device_id"]))
        rd = asyncio.create_task(self.registration.run())
        try:
            await self.endpoint.serve()
        finally:
            rd.cancel()

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
