"""Starting the agent: config.json, the network, adoption when the board has no identity, and the parts the
running agent is made of (capabilities, endpoint with its OSCORE context, resources, registration).

Layer: device side, top (below agent/app.py, which imports it at boot and forgets it once the agent is built:
none of this code is needed again until the next boot, so it does not stay in the heap). It must not hold
protocol or capability logic of its own.
"""

import json
import time

from agent import VERSION, caps
from agent import port as agent_port
from agent.app import Agent
from agent.endpoint import Endpoint
from agent.port import IS_MICROPYTHON, const, forget, udp_socket
from agent.rd import Registration
from agent.register import Locator, query
from agent.resources import Resources

CONFIG_PATH = "config.json"
OSCORE_SALT = b"pifleet-oscore-1"  # keeps OSCORE's keys apart from other uses of the board's secret
SEQ_PATH = "oscore.seq"
# Wi-Fi join: the first wait, doubled after each look that finds no link, up to the second (const: the names
# would stay in the heap as interned strings after this module is forgotten)
_JOIN_FIRST_MS = const(1000)
_JOIN_MAX_MS = const(30000)


def load_config(path=CONFIG_PATH):
    with open(path) as f:
        return json.load(f)


def join_network(config, path=CONFIG_PATH):
    """Join a network of the config and return our IP address; never gives up.

    After a power cut the router may boot slower than the board: it keeps trying, checking every 1 s, then
    2, 4 … up to 30 s (with up to a quarter of jitter, so a room of boards does not ask in step). connect() is
    called only when the station is not connecting already: the ESP32 port reconnects by itself once asked
    (status() is STAT_CONNECTING meanwhile), and connect() during that raises OSError "Wifi Internal Error".
    Several networks ("wifi": {"nets": [[ssid, psk], …]}, in order of preference): one per look, in turn.
    No network known, or none joined for wifi.fallback_s (default 300): the access point with its page for new
    credentials (agent/portal.py, loaded only then), which keeps trying these meanwhile.
    Ctrl-C (KeyboardInterrupt) goes through: the REPL must stay reachable.
    """
    import network

    from agent.port import random_bytes

    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    wifi = config.get("wifi") or {}
    nets = wifi.get("nets") or ([[wifi["ssid"], wifi.get("psk", "")]] if "ssid" in wifi else [])
    left = wifi.get("fallback_s", 300) * 1000
    try:  # the running agent had no network for fallback_s (agent/wifi.py's lost): the access point at once
        __import__("os").remove("wifi.lost")
        left = 0
    except OSError:
        pass
    wait_ms = _JOIN_FIRST_MS
    n = 0
    while not wlan.isconnected():
        if left <= 0 or not nets:
            from agent import portal

            try:
                return portal.run(config, path, wlan)
            finally:
                forget("portal")
        ssid, psk = nets[n % len(nets)]
        n += 1
        status = wlan.status()
        if status != network.STAT_CONNECTING or len(nets) > 1:
            try:
                if len(nets) > 1:
                    wlan.disconnect()  # the next network: the station would keep at the last one by itself
                wlan.connect(ssid, psk)
            except OSError as exc:
                print("wifi: connect:", exc)
        wait = wait_ms + wait_ms * random_bytes(1)[0] // 1024
        print("wifi: joining %r (status %d), next look in %d ms" % (ssid, status, wait))
        while wait > 0 and not wlan.isconnected():
            time.sleep_ms(100) if hasattr(time, "sleep_ms") else time.sleep(0.1)
            wait -= 100
            left -= 100
        wait_ms = min(wait_ms * 2, _JOIN_MAX_MS)
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
    if IS_MICROPYTHON:
        # agent/port.py waits on its sockets through asyncio's private core._io_queue (what MicroPython's own
        # streams use; there is no public call for a datagram socket): a release without it would otherwise
        # fail at the first datagram with an AttributeError. Say so, and stop (no reset: it would not help).
        import asyncio

        if not hasattr(getattr(asyncio, "core", None), "_io_queue"):
            print("agent: cannot run: this MicroPython's asyncio has no core._io_queue (the agent needs v1.22+)")
            return None
    config = load_config(path)
    ip = join_network(config, path)
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
    import agent as package

    # from here on a hang resets the board (agent/app.py feeds it; main.py counts the boots); a process target's
    # host restarts it instead
    package.WDT = __import__("machine").WDT(timeout=30000) if IS_MICROPYTHON else None
    try:
        # leftovers of an install a power loss interrupted: unfinished uploads, versions no longer named
        caps.remove_unused(config)
    except OSError:
        pass  # no caps/ directory: nothing to tidy
    # safe mode (main.py: the boots before failed): no role module, so the master can push a fix
    capabilities, failed = ([], []) if getattr(package, "safe", None) else caps.load(config.get("caps", {}), stems)
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
    resources.due = 0
    try:  # a plan of runs kept from before this boot (agent/plan.py): looked at once the agent runs
        open("plan").close()
        resources.due = 1
    except OSError:
        pass
    lifetime, rd_query = query(config, VERSION)
    registration = Registration(endpoint, lifetime, rd_query, resources.links, locate)
    forget("register")  # loaded again for each new registration (agent/rd.py)
    agent = Agent(config, path, ip, port, sock, endpoint, resources, registration, capabilities)
    resources.apply_role = agent.apply_role
    endpoint.pulse = agent.pulse
    resources.registration = registration
    endpoint.handler = resources.handle
    endpoint.stats["telemetry"] = 0
    endpoint.stats["telemetry_lost"] = 0
    agent_port.AGENT = agent  # for capabilities that report their state (agent/state.py)
    try:
        __import__("os").stat("ota.try")  # a new MicroPython waits for this boot's verdict (agent/ota.py)
    except OSError:
        return agent
    from agent import ota

    ota.trial(agent)
    forget("ota")
    return agent
