"""Fuzzing the master's CoAP endpoint over real UDP: generated requests to its resources (/rd, /rd/ID, /t, /pair,
/.well-known/core), mutations of real registrations, announcements and OSCORE-protected requests, and byte-level
garbage, all sent to a running `pifleet serve`.

What must hold: every Confirmable request is answered, never with 5.xx (except what the protocol itself says:
5.03 from /pair when 32 boards wait, 5.05 for a proxy request); garbage is dropped and counted in /api/metrics;
the master answers a normal request after each case, and its log has no ERROR or traceback (the fixture
checks that). The number of cases per target is printed at the end of the run (tests/fuzz/conftest.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import string

import aiocoap
import pytest
from aiocoap.numbers.codes import Code
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pifleet.devices.adoption import proof_of, stretch
from tests.support.oscore import Peer

from . import wire
from .counts import record

pytestmark = pytest.mark.timeout(300)

# cases per target; together about a minute on 2 cores
WELL_FORMED = 1500
MUTATED = 1500
GARBAGE = 1000

SETTINGS = dict(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
MAC = "24:0a:7f:fa:22:01"  # the board the fixture adopts (a real identity and OSCORE keys)
CODE = "F0ZZ2345"


def _open(k: bytes, sealed: dict) -> dict:
    """What agent/adopt.py does with the sealed identity: check the tag, decrypt, unpad."""
    iv, box = bytes.fromhex(sealed["iv"]), bytes.fromhex(sealed["box"])
    tag = hmac.new(hashlib.sha256(b"mac" + k).digest(), iv + box, hashlib.sha256).digest()
    assert hmac.compare_digest(tag, bytes.fromhex(sealed["tag"]))
    decryptor = Cipher(algorithms.AES(hashlib.sha256(b"enc" + k).digest()[:16]), modes.CBC(iv)).decryptor()
    plain = decryptor.update(box) + decryptor.finalize()
    return json.loads(plain[: -plain[-1]])


def _path(*segments: str) -> list[tuple[int, bytes]]:
    return [(wire.URI_PATH, s.encode()) for s in segments]


def _query(*items: str) -> list[tuple[int, bytes]]:
    return [(wire.URI_QUERY, i.encode()) for i in items]


LINKS = b'</cap>;ct=50,</stats>;ct=50,</a/blind/move>;rt="pifleet.cmd";ct=50'


class Fleet:
    """The master under test and an adopted board whose keys we hold: its protected registration, updates and
    telemetry get through to the handlers. A plain board's registration is refused (it is not paired), which is
    checked here once; plain requests are fuzzed all the same."""

    def __init__(self, master, client: wire.Client) -> None:
        self.master, self.client = master, client
        self.registrations: list[str] = []
        reply = client.exchange(
            Code.POST,
            _path("rd") + _query("ep=fz-plain", "lt=600", "name=fz-plain") + [(wire.CONTENT_FORMAT, wire.uint(40))],
            LINKS,
        )
        assert reply is not None and reply.code == Code.UNAUTHORIZED, reply
        self.peer, self.device_id = self._adopt()
        self.registrations.append(self._register())

    def _register(self) -> str:
        """The adopted board's protected registration; its location (rd/ID) is inside the protected answer."""
        reg = aiocoap.Message(code=Code.POST, payload=LINKS, content_format=40)
        reg.opt.uri_path, reg.opt.uri_query = ("rd",), ("ep=" + self.device_id, "lt=600", "mpy=6", "name=fz-paired")
        protected, rid = self.peer.protect(reg)
        protected.mtype, protected.mid = aiocoap.CON, self.client.next_mid()
        protected.token = protected.mid.to_bytes(2, "big")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(protected.encode(), self.master.coap)
            answer = aiocoap.Message.decode(sock.recvfrom(2048)[0])
        inner, _ = self.peer.unprotect(answer, rid)
        assert inner.code == Code.CREATED, inner
        return inner.opt.location_path[-1]

    def _announce(self, nonce: bytes, proof: bytes) -> wire.Reply:
        body = json.dumps(
            {
                "mac": MAC,
                "chip": "ESP32",
                "fw": "1.24.1",
                "mpy": 6,
                "agent": "fuzz",
                "nonce": nonce.hex(),
                "proof": proof.hex(),
            }
        ).encode()
        reply = self.client.exchange(Code.POST, _path("pair") + [(wire.CONTENT_FORMAT, wire.uint(50))], body)
        assert reply is not None and reply.code == Code.CHANGED, reply
        return reply

    def _adopt(self) -> tuple[Peer, str]:
        nonce = bytes(range(16))
        k = stretch(CODE, nonce)
        self._announce(nonce, proof_of(k))
        adoption = next(a for a in self.master.get("/api/adoptions") if a["mac"] == MAC)
        r = self.master.post(f"/api/adoptions/{adoption['id']}/confirm", json={"code": CODE, "name": "fz-paired"})
        assert r.status_code == 200, r.text
        answer = json.loads(self._announce(nonce, proof_of(k)).payload)
        identity = _open(k, answer)
        return Peer(bytes.fromhex(identity["secret"]), bytes.fromhex(identity["oscore_id"])), identity["device_id"]

    def protected(self, plain: aiocoap.Message) -> bytes:
        """The request as the adopted board would send it (fresh sequence number), as a datagram."""
        protected, _ = self.peer.protect(plain)
        protected.mtype, protected.mid = aiocoap.CON, self.client.next_mid()
        protected.token = protected.mid.to_bytes(2, "big")
        return protected.encode()


@pytest.fixture(scope="module")
def fleet(module_master):
    client = wire.Client(module_master.coap)
    yield Fleet(module_master, client)
    client.close()


def _metrics(master) -> dict[str, int]:
    return master.get("/api/metrics")


def _alive(client: wire.Client) -> None:
    """The master answers a CoAP ping (an empty CON gets a Reset) — its endpoint is still up."""
    mid = client.next_mid()
    client.send(wire.encode(wire.CON, 0, mid))
    reply = client.await_answer(mid, b"", 10)
    assert reply is not None and reply.mtype == wire.RST, f"no answer to a ping after the case: {reply}"


def _allowed(reply: wire.Reply, options: list[tuple[int, bytes]]) -> bool:
    """Not a server error — but for the 5.xx the protocol asks for."""
    if reply.code >> 5 != 5:
        return True
    paths = [v for n, v in options if n == wire.URI_PATH]
    if reply.code == Code.SERVICE_UNAVAILABLE and paths == [b"pair"]:
        return True  # 32 boards wait for adoption already (docs/protocol.md)
    if reply.code == Code.PROXYING_NOT_SUPPORTED and any(n in (wire.PROXY_URI, wire.PROXY_SCHEME) for n, _ in options):
        return True  # RFC 7252 §5.7.2
    return False


# ---- strategies ---------------------------------------------------------------------------------------------

nasty_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=string.ascii_letters + string.digits + "-_.", min_size=1, max_size=70),
    st.sampled_from(["", "\x00", "a\x00b", "é", "💡", " ", "%00", "..", "-", "0" * 64, "x" * 300]),
)
numeric_text = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.integers(min_value=-10, max_value=100000).map(str),
    st.sampled_from(["", "1e3", "0x10", " 5", "5 ", "NaN", "٣", "９", "+7", "-0"]),
    nasty_text,
)
query_item = (
    st.one_of(
        st.tuples(st.sampled_from(["ep", "name", "role", "et", "fw", "agent", "base", "d", "x"]), nasty_text),
        st.tuples(st.sampled_from(["lt", "mpy"]), numeric_text),
        st.tuples(st.just("ep"), st.sampled_from(["fz-plain", "fz-a", "fz-b", "esp-240a7ffa2201"])),
    ).map(lambda kv: f"{kv[0]}={kv[1]}")
    | nasty_text
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
hexish = st.one_of(st.binary(min_size=0, max_size=40).map(bytes.hex), nasty_text, st.integers())
pair_body = st.fixed_dictionaries(
    {
        "mac": st.one_of(st.just(MAC), st.sampled_from(["24:0a:7f:00:00:01", "AA:BB:CC:DD:EE:FF"]), nasty_text),
        "nonce": st.one_of(st.binary(min_size=16, max_size=16).map(bytes.hex), hexish),
        "proof": st.one_of(st.binary(min_size=32, max_size=32).map(bytes.hex), hexish),
    },
    optional={
        "chip": st.one_of(nasty_text, json_values),
        "fw": st.one_of(nasty_text, json_values),
        "mpy": st.one_of(st.integers(min_value=-(2**70), max_value=2**70), json_values),
        "agent": nasty_text,
        "extra": json_values,
    },
)
telemetry_body = st.fixed_dictionaries(
    {
        "cap": st.one_of(st.sampled_from(["temperature", "blind"]), nasty_text, json_values),
        "values": st.one_of(st.dictionaries(nasty_text, json_values, max_size=6), json_values),
    },
)
link_format = st.lists(
    st.tuples(
        st.sampled_from(["/cap", "/a/blind/move", "", "/x y", "/\x00"]) | nasty_text,
        st.lists(st.sampled_from(["ct=50", 'rt="pifleet.cmd"', "ct", 'rt="', ";;", "if=x"]) | nasty_text, max_size=3),
    ),
    max_size=6,
).map(lambda links: ",".join(f"<{href}>" + "".join(";" + a for a in attrs) for href, attrs in links))

payloads = st.one_of(
    st.just(b""),
    st.binary(max_size=300),
    link_format.map(str.encode),
    json_values.map(lambda v: json.dumps(v).encode()),
    pair_body.map(lambda v: json.dumps(v).encode()),
    telemetry_body.map(lambda v: json.dumps(v).encode()),
)
paths = st.one_of(
    st.sampled_from(
        [
            ("rd",),
            ("t",),
            ("pair",),
            (".well-known", "core"),
            ("rd", "REG"),
            ("rd", "REG", "x"),
            ("rd", "00000000"),
            (),
            ("a", "blind", "move"),
            ("cap",),
        ]
    ),
    st.lists(nasty_text, max_size=4).map(tuple),
)
uint_values = st.one_of(st.integers(min_value=0, max_value=2**32 - 1).map(wire.uint), st.binary(max_size=4))
extra_option = st.one_of(
    st.tuples(
        st.sampled_from([wire.OBSERVE, wire.ACCEPT, wire.MAX_AGE, wire.SIZE1, wire.SIZE2, wire.URI_PORT]), uint_values
    ),
    st.tuples(st.sampled_from([wire.BLOCK1, wire.BLOCK2]), st.binary(max_size=3)),
    st.tuples(st.sampled_from([wire.IF_MATCH, wire.ETAG, wire.ECHO]), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just(wire.IF_NONE_MATCH), st.just(b"")),
    st.tuples(st.just(wire.URI_HOST), st.sampled_from([b"127.0.0.1", b"localhost", b"pifleet.local", b"x"])),
    st.tuples(st.just(wire.NO_RESPONSE), st.sampled_from([b"", b"\x02", b"\x08", b"\x10", b"\x1a"])),
    st.tuples(st.sampled_from([wire.PROXY_URI, wire.PROXY_SCHEME]), st.sampled_from([b"coap://127.0.0.1/rd", b"http"])),
    # unknown options: odd numbers are critical (4.02), even ones elective (ignored)
    st.tuples(st.integers(min_value=1, max_value=3000).filter(lambda n: n not in KNOWN), st.binary(max_size=8)),
)
KNOWN = {1, 3, 4, 5, 6, 7, 8, 9, 11, 12, 14, 15, 17, 20, 23, 27, 28, 35, 39, 60, 252, 258, 292}
request_codes = st.one_of(
    st.sampled_from([Code.GET, Code.POST, Code.PUT, Code.DELETE]), st.integers(min_value=1, max_value=31)
)


@st.composite
def targeted(draw) -> tuple[int, list[tuple[int, bytes]], bytes]:
    """A request each resource takes, with one or more parts wrong (or none)."""
    kind = draw(st.sampled_from(["register", "update", "telemetry", "pair"]))
    if kind == "register":
        query = [
            f"ep={draw(st.sampled_from(['fz-a', 'fz-b', 'fz-c']) | nasty_text)}",
            f"lt={draw(st.sampled_from(['60', '5', '86400']) | numeric_text)}",
        ]
        query += draw(st.lists(query_item, max_size=4))
        options = _path("rd") + _query(*query) + [(wire.CONTENT_FORMAT, wire.uint(draw(st.sampled_from([40, 0, 50]))))]
        return Code.POST, options, draw(st.one_of(link_format.map(str.encode), payloads))
    if kind == "update":
        return (
            draw(st.sampled_from([Code.POST, Code.POST, Code.DELETE, Code.GET])),
            _path("rd", "REG") + _query(*draw(st.lists(query_item, max_size=2))),
            draw(payloads),
        )
    if kind == "telemetry":
        body = draw(st.one_of(telemetry_body.map(lambda v: json.dumps(v).encode()), payloads))
        return Code.POST, _path("t") + _query("ep=fz-plain") + [(wire.CONTENT_FORMAT, wire.uint(50))], body
    body = draw(st.one_of(pair_body.map(lambda v: json.dumps(v).encode()), payloads))
    return Code.POST, _path("pair") + [(wire.CONTENT_FORMAT, wire.uint(50))], body


@st.composite
def any_request(draw) -> tuple[int, list[tuple[int, bytes]], bytes]:
    code = int(draw(request_codes))
    options = [(wire.URI_PATH, s.encode()) for s in draw(paths)]
    options += [(wire.URI_QUERY, q.encode()) for q in draw(st.lists(query_item, max_size=8))]
    content_format = draw(
        st.one_of(st.none(), st.sampled_from([0, 40, 50, 60]), st.integers(min_value=0, max_value=65535))
    )
    if content_format is not None:
        options.append((wire.CONTENT_FORMAT, wire.uint(content_format)))
    options += draw(st.lists(extra_option, max_size=3))
    return code, options, draw(payloads)


# ---- the targets --------------------------------------------------------------------------------------------


@settings(max_examples=WELL_FORMED, **SETTINGS)
@given(request=st.one_of(targeted(), any_request()))
def test_well_formed_requests_are_answered_without_server_errors(fleet, request):
    code, options, payload = request
    if (wire.URI_PATH, b"REG") in options:  # a registration that exists
        options = [
            (n, fleet.registrations[-1].encode() if (n, v) == (wire.URI_PATH, b"REG") else v) for n, v in options
        ]
    record("coap: well-formed requests")
    # No-Response (RFC 7967) asks the master to say nothing for some classes: aiocoap then sends nothing at all
    no_response = any(n == wire.NO_RESPONSE for n, _ in options)
    reply = fleet.client.exchange(code, options, payload, timeout=0.5 if no_response else 5)
    if reply is None and no_response:
        _alive(fleet.client)
        return
    assert reply is not None, f"no answer to {code} {options} {payload[:80]!r}"
    assert no_response or reply.mtype != wire.ACK or reply.code != 0, "an empty ACK without its response"
    assert _allowed(reply, options), f"{reply.code_text} {reply.payload[:200]!r} for {code} {options}"
    if reply.code == Code.CREATED:
        location = [v.decode() for n, v in reply.options if n == wire.LOCATION_PATH]
        if location[:1] == ["rd"] and len(location) == 2:
            fleet.registrations.append(location[1])


def _seeds(fleet: Fleet) -> list[bytes]:
    """Real datagrams of every kind the master takes: plain and protected registrations, updates, telemetry,
    an announcement, discovery."""
    reg = aiocoap.Message(code=Code.POST, payload=LINKS, content_format=40)
    reg.opt.uri_path, reg.opt.uri_query = ("rd",), ("ep=" + fleet.device_id, "lt=300", "mpy=6", "fw=1.24.1")
    update = aiocoap.Message(code=Code.POST)
    update.opt.uri_path = ("rd", fleet.registrations[0])
    tele = aiocoap.Message(
        code=Code.POST, payload=b'{"cap":"temperature","values":{"celsius":21.5}}', content_format=50
    )
    tele.opt.uri_path, tele.opt.uri_query = ("t",), ("ep=" + fleet.device_id,)
    plain = [
        wire.encode(
            wire.CON,
            Code.POST,
            1,
            b"\x01\x02",
            _path("rd") + _query("ep=fz-m", "lt=90", "mpy=6") + [(wire.CONTENT_FORMAT, wire.uint(40))],
            LINKS,
        ),
        wire.encode(wire.CON, Code.POST, 2, b"\x03", _path("rd", fleet.registrations[0]) + _query("lt=120")),
        wire.encode(
            wire.CON,
            Code.POST,
            3,
            b"",
            _path("t") + _query("ep=fz-plain") + [(wire.CONTENT_FORMAT, wire.uint(50))],
            b'{"cap":"temperature","values":{"celsius":21.5}}',
        ),
        wire.encode(
            wire.CON,
            Code.POST,
            4,
            b"\x04\x05\x06\x07",
            _path("pair") + [(wire.CONTENT_FORMAT, b"\x32")],
            json.dumps({"mac": "24:0a:7f:00:00:99", "chip": "ESP32", "nonce": "00" * 16, "proof": "11" * 32}).encode(),
        ),
        wire.encode(wire.CON, Code.GET, 5, b"\x08", _path(".well-known", "core")),
    ]
    return plain + [fleet.protected(m) for m in (reg, update, tele)]


@st.composite
def mutations(draw, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(st.sampled_from(["flip", "byte", "truncate", "insert", "delete", "header", "splice"]))
        at = draw(st.integers(min_value=0, max_value=max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif kind == "byte" and data:
            data[at] = draw(st.integers(min_value=0, max_value=255))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(min_value=1, max_value=8))]
        elif kind == "header" and len(data) >= 4:
            data[0] = 0x40 | draw(st.integers(min_value=0, max_value=63))  # type and token length
            data[1] = draw(st.integers(min_value=0, max_value=255))  # any code
        elif kind == "splice":
            other = draw(st.sampled_from(seeds))
            data[at:] = other[draw(st.integers(min_value=0, max_value=len(other) - 1)) :]
    return bytes(data)


@pytest.fixture(scope="module")
def seeds(fleet):
    return _seeds(fleet)


@pytest.fixture(scope="module")
def mutation_client(fleet):
    client = wire.Client(fleet.master.coap)
    client.mid = 0x8000  # pings from here; the mutated datagrams keep their own MIDs
    yield client
    client.close()


def _check_all(client: wire.Client, replies: list[wire.Reply], data: bytes) -> None:
    for reply in replies:
        assert reply.code >> 5 != 5 or reply.code == Code.SERVICE_UNAVAILABLE, (
            f"{reply.code_text} {reply.payload[:200]!r} after datagram {data.hex()}"
        )


def _send_then_ping(client: wire.Client, data: bytes) -> None:
    """Send the datagram, then ping from the same socket (a MID of our own, never one the datagram had): the
    endpoint is still up; every answer that came back meanwhile is checked."""
    used_mid = int.from_bytes(data[2:4], "big") if len(data) >= 4 else None
    client.send(data)
    mid = client.next_mid()
    if mid == used_mid:
        mid = client.next_mid()
    client.send(wire.encode(wire.CON, 0, mid))
    seen: list[wire.Reply] = []
    while True:
        reply = client.receive(10)
        assert reply is not None, f"no answer to a ping after datagram {data.hex()}"
        if reply.mtype == wire.RST and reply.mid == mid:
            break
        seen.append(reply)
    _check_all(client, seen, data)


def test_mutated_datagrams_are_refused_or_dropped(fleet, seeds, mutation_client):
    """Mutations of real registrations, announcements and OSCORE-protected requests (the adopted board's, so
    they reach decryption, the replay window and the guard)."""

    @settings(max_examples=MUTATED, **SETTINGS)
    @given(data=mutations(seeds))
    def run(data):
        record("coap: mutated datagrams")
        _send_then_ping(mutation_client, data)

    before = _metrics(fleet.master)
    run()
    _check_all(mutation_client, mutation_client.drain(), b"(late answers)")
    after = _metrics(fleet.master)
    assert after.get("oscore_refused", 0) + after.get("registrations_refused", 0) > before.get(
        "oscore_refused", 0
    ) + before.get("registrations_refused", 0)


garbage = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=3),  # too short for a header
    st.tuples(st.integers(min_value=0, max_value=255).filter(lambda b: b >> 6 != 1), st.binary(max_size=100)).map(
        lambda t: bytes([t[0]]) + t[1]
    ),  # not version 1
    st.tuples(
        st.integers(min_value=0, max_value=63),
        st.integers(min_value=0, max_value=255),
        st.binary(min_size=2, max_size=2),
        st.binary(max_size=200),
    ).map(lambda t: bytes([0x40 | t[0], t[1]]) + t[2] + t[3]),  # a version 1 header, anything after it
    # options whose delta or length runs past the end, or use the reserved nibble 15
    st.sampled_from(
        [
            b"\x40\x01\x00\x01\xd0",
            b"\x40\x01\x00\x01\xe0\x01",
            b"\x40\x01\x00\x01\x0d",
            b"\x40\x01\x00\x01\xf0",
            b"\x40\x01\x00\x01\x0f",
            b"\x40\x01\x00\x01\xb5ab",
            b"\x40\x01\x00\x01\xb1\xff",
            b"\x40\x01\x00\x01\xb2\xc3\x28",  # Uri-Path not UTF-8
            b"\x40\x01\x00\x01\xbf",
            b"\x40\x01\x00\x01\xff",
        ]
    ),
)


def test_garbage_is_dropped_and_counted(fleet, mutation_client):
    unparsable = 0

    @settings(max_examples=GARBAGE, **SETTINGS)
    @given(data=garbage)
    def run(data):
        nonlocal unparsable
        record("coap: garbage datagrams")
        if len(data) < 4 or data[0] >> 6 != 1:
            unparsable += 1  # certainly malformed: no CoAP header
        _send_then_ping(mutation_client, data)

    before = _metrics(fleet.master).get("malformed_dropped", 0)
    run()
    assert _metrics(fleet.master).get("malformed_dropped", 0) - before >= unparsable > 0


def test_the_master_still_works(fleet):
    """After all that: discovery, a registration and the API answer as usual."""
    reply = fleet.client.exchange(Code.GET, _path(".well-known", "core"))
    assert reply is not None and reply.code == Code.CONTENT and b"</rd>" in reply.payload
    location = fleet._register()  # the paired board registers as before
    assert fleet.master.device("fz-paired")["online"] and location
