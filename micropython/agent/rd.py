"""Registration with the master, in the style of a CoRE Resource Directory (RFC 9176).

Layer: device side, application. It registers (POST /rd?ep=…&lt=…), keeps the registration alive with an
update every lifetime/3 seconds, registers anew when the master answers 4.04 (it forgot us), retries failures
with capped exponential backoff, and removes the registration on an orderly stop. It never raises into the
agent's loop: a master that is away is normal, not an error.
"""

import asyncio

from agent import coap
from agent.endpoint import RequestError
from agent.port import const, forget, implementation, print_exception, sleep_ms, sockaddr, wait_for_ms

# CoAP numbers (RFC 7252, 7959), inlined: agent/coap.py keeps only what the tests use by name
_CHANGED = const(68)
_CONTENT_FORMAT = const(12)
_CREATED = const(65)
_DELETE = const(4)
_LINK_FORMAT = const(40)
_LOCATION_PATH = const(8)
_NOT_FOUND = const(132)
_POST = const(2)
_URI_PATH = const(11)
_URI_QUERY = const(15)

_BACKOFF_MIN_MS = const(1000)
_BACKOFF_MAX_MS = const(60000)
_MDNS_TIMEOUT_MS = const(1000)


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
            from agent import mdns  # only while looking: a registered board does not keep the module

            try:
                found = await mdns.find(self.ip, _MDNS_TIMEOUT_MS)
            finally:
                forget("mdns")
            if found is not None:
                if found != self.found:
                    print("mdns: master at %s:%d" % found)
                    self.found = found
                return sockaddr(found[0], found[1])
            if self.configured is None:
                print("mdns: no master answered")
        return self.configured


def _quote(text):
    """Percent-encode what may not appear raw in a Uri-Query value."""
    out = []
    for ch in str(text):
        if ch.isalpha() or ch.isdigit() or ch in "-._~":
            out.append(ch)
        else:
            out.append("".join("%%%02X" % b for b in ch.encode()))
    return "".join(out)


class Registration:
    def __init__(self, endpoint, master_addr, config, links, agent_version, locate=None):
        self.endpoint = endpoint
        self.master = master_addr
        # coroutine function finding the master (mDNS, else master_addr) before each new registration
        self.locate = locate
        self.lifetime = int(config.get("lifetime", 60))
        et, mpy, fw = implementation()
        self.query = [
            ("ep", config["device_id"]),
            ("lt", self.lifetime),
            ("et", config.get("et", et)),
            ("name", config.get("name", config["device_id"])),
            ("role", config.get("role", "")),
            ("mpy", mpy),
            ("fw", fw),
            ("agent", agent_version),
        ]
        self.links = links
        self.location = None  # 'rd/REG_ID' while registered
        self._wake = None  # set while run() sleeps between updates
        self.registrations = 0  # how often we registered anew (shown in /stats)

    async def _register(self):
        if self.locate is not None:
            self.master = await self.locate()
        if self.master is None:
            return False  # nobody to register with yet: back off and look again
        options = coap.path_options(_URI_PATH, "rd")
        options += [(_URI_QUERY, ("%s=%s" % (k, _quote(v))).encode()) for k, v in self.query]
        options.append((_CONTENT_FORMAT, coap.uint(_LINK_FORMAT)))
        response = await self.endpoint.request(self.master, _POST, options, self.links)
        if response.code != _CREATED:
            print("rd: registration refused:", coap.code_str(response.code), response.payload)
            return False
        location = "/".join(v.decode() for v in response.option_values(_LOCATION_PATH))
        if not location:
            print("rd: registration answer has no Location-Path")
            return False
        self.location = location
        self.registrations += 1
        print("rd: registered as", location)
        return True

    async def _update(self):
        options = coap.path_options(_URI_PATH, self.location)
        response = await self.endpoint.request(self.master, _POST, options)
        if response.code == _NOT_FOUND:
            print("rd: master forgot", self.location, "- registering anew")
            self.location = None
            return True  # not a failure: register at once
        if response.code != _CHANGED:
            print("rd: update refused:", coap.code_str(response.code))
            return False
        return True

    async def run(self):
        """Stay registered for as long as the board runs."""
        backoff = _BACKOFF_MIN_MS
        while True:
            try:
                if self.location is None:
                    ok = await self._register()
                else:
                    ok = await self._update()
            except RequestError as exc:
                print("rd: master did not answer:", exc)
                if self.locate is not None:
                    self.location = None  # it may have moved: find it again and register anew
                ok = False
            except Exception as exc:  # noqa: BLE001 — registration must never stop the board
                print_exception(exc)
                ok = False
            if not ok:
                await sleep_ms(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_MS)
                continue
            backoff = _BACKOFF_MIN_MS
            if self.location is not None:
                self._wake = asyncio.Event()
                try:
                    await wait_for_ms(self._wake.wait(), self.lifetime * 1000 // 3)
                except asyncio.TimeoutError:
                    pass
                self._wake = None

    def changed(self, links, role):
        """What the board offers changed (a new role): register anew at once with the new links."""
        self.links = links
        self.query = [(k, role if k == "role" else v) for k, v in self.query]
        self.location = None
        if self._wake is not None:
            self._wake.set()

    async def deregister(self, timeout_ms=3000):
        """DELETE our registration; give up quietly after timeout_ms (we are shutting down)."""
        if self.location is None:
            return
        options = coap.path_options(_URI_PATH, self.location)
        try:
            await wait_for_ms(self.endpoint.request(self.master, _DELETE, options), timeout_ms)
            print("rd: deregistered", self.location)
        except (RequestError, asyncio.TimeoutError):
            print("rd: master did not confirm deregistration")
        self.location = None
