"""Registering anew with the master: finding it (mDNS, else the configured address) and POST /rd?ep=…&lt=…;
the new links after a role switch in place (POST /rd/REG_ID?role=… with them, RFC 9176 §5.3); and DELETE of the
registration when the board stops in order.

Layer: device side, application (part of agent/rd.py). A board registers at boot, after a role switch and when
the master forgot it: seldom, so agent/rd.py imports this module for each registration and forgets it after.
Nothing long-lived may refer to its classes or functions, or its code would stay in the heap: the Registration
copies a Locator's fields (`ip`, `configured`, `mdns`, `found`) and hands itself to find().
"""

import asyncio
import sys

from agent import coap
from agent.endpoint import RequestError
from agent.port import IS_MICROPYTHON, const, forget, sockaddr, wait_for_ms

# CoAP numbers (RFC 7252), inlined: agent/coap.py keeps only what the tests use by name
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

_MDNS_TIMEOUT_MS = const(1000)


def implementation():
    """(et, mpy, fw) describing this runtime for registration."""
    impl = sys.implementation
    if IS_MICROPYTHON:
        return "pifleet.esp32", getattr(impl, "_mpy", 0), "%d.%d.%d" % impl.version[:3]
    return "pifleet.process", 0, "cpython-%d.%d.%d" % impl.version[:3]


def query(config, agent_version):
    """(lifetime, [(key, value)]) of the board's registration, from its config."""
    lifetime = int(config.get("lifetime", 60))
    et, mpy, fw = implementation()
    return lifetime, [
        ("ep", config["device_id"]),
        ("lt", lifetime),
        ("et", config.get("et", et)),
        ("name", config.get("name", config["device_id"])),
        ("role", config.get("role", "")),
        ("mpy", mpy),
        ("fw", fw),
        ("agent", agent_version),
    ]


class Locator:
    """Where the master is: what an mDNS query finds first, else the address in the config.

    config["master"] absent or "mdns": mDNS only (asked again at every attempt). {"host", "port"}: mDNS first,
    falling back to that address — unless "mdns" is false, or the host is a loopback address (a board simulated
    on the master's own machine, where the configured address is the truth and other masters may advertise).
    Used at boot (adoption, the first registration); the Registration then keeps copies of its fields.
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
        return await find(self)


async def find(where):
    """The master's address for `where` (a Locator, or a Registration with its fields), or None."""
    if where.mdns:
        from agent import mdns  # only while looking: a registered board does not keep the module

        try:
            found = await mdns.find(where.ip, _MDNS_TIMEOUT_MS)
        finally:
            forget("mdns")
        if found is not None:
            if found != where.found:
                print("mdns: master at %s:%d" % found)
                where.found = found
            return sockaddr(found[0], found[1])
        if where.configured is None:
            print("mdns: no master answered")
    return where.configured


def _quote(text):
    """Percent-encode what may not appear raw in a Uri-Query value."""
    out = []
    for ch in str(text):
        if ch.isalpha() or ch.isdigit() or ch in "-._~":
            out.append(ch)
        else:
            out.append("".join("%%%02X" % b for b in ch.encode()))
    return "".join(out)


async def register(reg):
    """POST /rd with the board's query and links; True when the master took it (reg.location is set). While
    registered, with new links (a role switch in place): the update that carries them (relink)."""
    if reg.location is not None:
        return await relink(reg)
    if reg.mdns and reg.lookup:  # not when registering anew with a master that answers (a new role)
        reg.master = await find(reg)
    if reg.master is None:
        return False  # nobody to register with yet: back off and look again
    import agent

    options = coap.path_options(_URI_PATH, "rd")
    query = reg.query
    safe = getattr(agent, "safe", None)
    if safe:  # safe mode (agent/boots.py): the master shows why, and can push a fix
        query = query + [("safe", safe)]
    options += [(_URI_QUERY, ("%s=%s" % (k, _quote(v))).encode()) for k, v in query]
    options.append((_CONTENT_FORMAT, coap.uint(_LINK_FORMAT)))
    links = reg.links
    response = await reg.endpoint.request(reg.master, _POST, options, links)
    if response.code != _CREATED:
        print("rd: registration refused:", coap.code_str(response.code), response.payload)
        return False
    location = "/".join(v.decode() for v in response.option_values(_LOCATION_PATH))
    if not location:
        print("rd: registration answer has no Location-Path")
        return False
    reg.location = location
    reg.lookup = False
    reg.relink = reg.links is not links  # a switch while it was on its way: its links follow in an update
    reg.registrations += 1
    print("rd: registered as", location)
    return True


async def deregister(reg, timeout_ms):
    """DELETE the registration; give up quietly after timeout_ms (the board is stopping)."""
    if reg.location is None:
        return
    options = coap.path_options(_URI_PATH, reg.location)
    try:
        await wait_for_ms(reg.endpoint.request(reg.master, _DELETE, options), timeout_ms)
        print("rd: deregistered", reg.location)
    except (RequestError, asyncio.TimeoutError):
        print("rd: master did not confirm deregistration")
    reg.location = None


async def relink(reg):
    """POST /rd/REG_ID?role=ROLE with the new links as its payload: an update that replaces the registration's
    links (RFC 9176 §5.3). The board did not restart, so the registration stands, and with it the master's plan
    and time on the board: only the links and the role changed (and safe mode ended: agent/replace.py's
    changed()). True when the master took it; a master that forgot the registration (4.04) gets a new one at once."""
    options = coap.path_options(_URI_PATH, reg.location)
    role = [v for k, v in reg.query if k == "role"][0]
    options += [(_URI_QUERY, ("role=%s" % _quote(role)).encode()), (_CONTENT_FORMAT, coap.uint(_LINK_FORMAT))]
    links = reg.links
    response = await reg.endpoint.request(reg.master, _POST, options, links)
    if response.code == _NOT_FOUND:
        print("rd: master forgot", reg.location, "- registering anew")
        reg.location = None
        return True  # not a failure: register at once
    if response.code != _CHANGED:
        print("rd: links update refused:", coap.code_str(response.code), response.payload)
        return False
    reg.relink = reg.links is not links  # another switch while it was on its way: once more
    print("rd: links updated (role %s)" % role)
    return True
