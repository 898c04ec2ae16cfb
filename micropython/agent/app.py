"""Agent assembly and top loop: config, network join, CoAP endpoint, capabilities, registration.

Layer: device side, top. It wires the other agent modules together and owns the loop that must never die:
an exception is printed (sys.print_exception) and the board keeps serving. Ctrl-C (KeyboardInterrupt — on
the virtual board the runner's stop()) is the orderly stop: outputs safe, registration deleted.
It must not hold protocol or capability logic of its own.
"""

import json
import time

import asyncio

from agent import VERSION, caps
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


class Agent:
    def __init__(self, config, ip):
        self.config = config
        self.ip = ip
        self.port = int(config.get("listen_port", 5683))
        self.capabilities, failed = caps.load(config.get("caps", {}))
        self.sock = udp_socket(ip, self.port)
        self.endpoint = Endpoint(self.sock, None)
        self.resources = Resources(config["device_id"], self.capabilities, self.endpoint.stats, failed)
        self.endpoint.handler = self.resources.handle
        master = config["master"]
        self.registration = Registration(self.endpoint, sockaddr(master["host"], int(master["port"])),
                                         config, self.resources.links(), VERSION)
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
    agent = Agent(config, ip)
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
