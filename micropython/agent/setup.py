"""Starting the agent: config.json, the network, adoption when the board has no identity, and the parts the
running agent is made of (capabilities, endpoint with its OSCORE context, resources, registration).

Layer: device side, top (below agent/app.py, which imports it at boot and forgets it once the agent is built:
none of this code is needed again until the next boot, so it does not stay in the heap). It must not hold
protocol or capability logic of its own.
"""

import json
import time

from agent import VERSION, caps
from agent.app import Agent
from agent.endpoint import Endpoint
from agent.port import forget, udp_socket
from agent.rd import Locator, Registration
from agent.resources import Resources

CONFIG_PATH = "config.json"
OSCORE_SALT = b"pifleet-oscore-1"  # keeps OSCORE's keys apart from other uses of the board's secret
SEQ_PATH = "oscore.seq"


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


def start(path=CONFIG_PATH):
    """The agent of this board, ready to serve; None when stopped by Ctrl-C before its adoption."""
    config = load_config(path)
    ip = join_network(config.get("wifi", {}))
    locate = Locator(config, ip)
    if not config.get("device_id"):
        # no identity here (flashed elsewhere, or factory reset): nothing but adoption until a person confirms
        from agent import adopt  # paired boards never load it

        config = adopt.adopt_identity(config, ip, locate, VERSION, path)
        forget("adopt")
        if config is None:
            return None
    port = int(config.get("listen_port", 5683))
    stems = config.get("modules", {})
    try:
        # leftovers of an install a power loss interrupted: unfinished uploads, versions no longer named
        caps.remove_unused(config)
    except OSError:
        pass  # no caps/ directory: nothing to tidy
    capabilities, failed = caps.load(config.get("caps", {}), stems)
    if failed and config.get("previous"):
        from agent import role  # a version that cannot start: back to the one it replaced

        started, failed = role.fall_back(config, failed, path)
        capabilities += started
        forget("role")
    forget("caps")  # the loader and the file tidying wait for the next role switch (the Capability objects stay)
    sock = udp_socket(ip, port)
    endpoint = Endpoint(sock, None, security_context(config))
    resources = Resources(config["device_id"], capabilities, endpoint.stats, failed)
    resources.role = config.get("role", "")
    registration = Registration(
        endpoint, locate.configured, config, resources.links(), VERSION, locate=locate if locate.mdns else None
    )
    return Agent(config, path, ip, port, sock, endpoint, resources, registration, capabilities)
