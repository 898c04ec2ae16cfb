# Runs the agent's OSCORE module over oscore_vectors.json (RFC 8613 Appendix C), refusals, Echo recovery, a
# randomized robustness run and simulated reboots; prints one JSON object of results.
# Written for both interpreters (`micropython oscore_runner.py VECTORS WORKDIR FUZZ_COUNT` and CPython), so one
# pytest file checks both. The agent package must be importable.
import json
import sys

from agent import coap, cose, kdf, oscore


def hexof(data):
    return "".join("%02x" % b for b in data)


def unhex(text):
    return bytes(int(text[i : i + 2], 16) for i in range(0, len(text), 2))


def context(case, **kw):
    idc = case["id_context"]
    return oscore.Context(
        unhex(case["secret"]),
        unhex(case["salt"]),
        unhex(case["sender_id"]),
        unhex(case["recipient_id"]),
        None if idc is None else unhex(idc),
        **kw,
    )


def outcome(fn, *args):
    """The name of the exception fn raised, or "ok"; anything but an OscoreError is reported as a crash."""
    try:
        fn(*args)
    except oscore.OscoreError as exc:
        return exc.reason
    except Exception as exc:  # noqa: BLE001 - the point is to notice any other exception
        return "CRASH %s: %s" % (type(exc).__name__, exc)
    return "ok"


def run_vectors(vectors):
    derive = []
    for case in vectors["derive"]:
        ctx = context(case, fresh=True)
        idc = None if case["id_context"] is None else unhex(case["id_context"])
        derive.append(
            {
                "sender_key": hexof(ctx.sender_key),
                "recipient_key": hexof(ctx.recipient_key),
                "common_iv": hexof(ctx.common_iv),
                "info_sender": hexof(kdf.kdf_info(ctx.sender_id, idc, b"Key", 16)),
                "info_recipient": hexof(kdf.kdf_info(ctx.recipient_id, idc, b"Key", 16)),
                "info_iv": hexof(kdf.kdf_info(b"", idc, b"IV", 13)),
            }
        )
    requests, rids = [], []
    for case in vectors["requests"]:
        client = context(vectors["derive"][case["client"]], seq=case["seq"], fresh=True)
        server = context(vectors["derive"][case["server"]], fresh=True)
        outer, rid = client.protect_request(coap.decode(unhex(case["plain"])))
        inner, srid = server.unprotect_request(coap.decode(coap.encode(outer)))
        rids.append((client, server, rid, srid))
        requests.append(
            {
                "protected": hexof(coap.encode(outer)),
                "option": hexof(outer.option(oscore.OSCORE)),
                "nonce": hexof(client.nonce(rid[0], rid[1])),
                "aad": hexof(cose.aad(rid[0], rid[1])),
                "unprotected": hexof(coap.encode(inner)),
            }
        )
    responses = []
    for case in vectors["responses"]:
        client, server, rid, srid = rids[case["request"]]
        server.seq = case["server_seq"]
        outer = server.protect_response(coap.decode(unhex(case["plain"])), srid, fresh=case["fresh"])
        inner = client.unprotect_response(coap.decode(coap.encode(outer)), rid)
        responses.append({"protected": hexof(coap.encode(outer)), "unprotected": hexof(coap.encode(inner))})
    return {"derive": derive, "requests": requests, "responses": responses}


SECRET = unhex("0102030405060708090a0b0c0d0e0f10")


def pair(fresh=True, client_id=b"\x05", server_id=b"\x01", seq=0):
    """A client (the master) and a server (a board) context sharing one secret."""
    return (
        oscore.Context(SECRET, b"salt", client_id, server_id, fresh=True, seq=seq),
        oscore.Context(SECRET, b"salt", server_id, client_id, fresh=fresh),
    )


def request(path="a/blind/stop", mid=1, payload=b'{"eid": "e1"}'):
    return coap.Message(coap.CON, coap.POST, mid, b"\x01\x02", coap.path_options(coap.URI_PATH, path), payload)


def wire(msg):
    return coap.decode(coap.encode(msg))


def with_option(msg, value):
    """msg with its OSCORE option value replaced."""
    options = [(n, value if n == oscore.OSCORE else v) for n, v in msg.options]
    return coap.Message(msg.type, msg.code, msg.mid, msg.token, options, msg.payload)


def flipped(data, index):
    data = bytearray(data)
    data[index] ^= 0x01
    return bytes(data)


def run_refusals():
    out = {}
    client, server = pair()
    outer, rid = client.protect_request(request())
    out["accepted"] = outcome(server.unprotect_request, wire(outer))
    out["replayed"] = outcome(server.unprotect_request, wire(outer))
    for _ in range(40):
        client.protect_request(request())
    old, _ = client.protect_request(request())  # overtaken by the next one: late, but inside the window
    newest, _ = client.protect_request(request())
    out["newest"] = outcome(server.unprotect_request, wire(newest))
    out["late_in_window"] = outcome(server.unprotect_request, wire(old))
    ancient = pair(seq=3)[0]
    out["too_old"] = outcome(server.unprotect_request, wire(ancient.protect_request(request())[0]))
    fresh_one, _ = client.protect_request(request())
    data = coap.encode(fresh_one)
    out["ciphertext_altered"] = outcome(server.unprotect_request, coap.decode(flipped(data, len(data) - 12)))
    out["tag_altered"] = outcome(server.unprotect_request, coap.decode(flipped(data, len(data) - 1)))
    value = fresh_one.option(oscore.OSCORE)
    later = bytearray(value)
    later[1] ^= 0x40  # a sequence number the window has not seen: only the tag can tell
    out["piv_altered"] = outcome(server.unprotect_request, with_option(fresh_one, bytes(later)))
    # A kid the server also receives from (second context, same secret): the key differs, so the tag fails.
    other_server = pair(client_id=b"\x06")[1]
    out["kid_altered"] = outcome(other_server.unprotect_request, with_option(fresh_one, value[:-1] + b"\x06"))
    out["unknown_kid"] = outcome(server.unprotect_request, with_option(fresh_one, value[:-1] + b"\x07"))
    # Class U options are not protected (RFC 8613 §4.1): a changed Uri-Host still verifies.
    hosted, _ = client.protect_request(coap.Message(coap.CON, coap.GET, 9, b"", [(coap.URI_HOST, b"board")]))
    hosted.options[0] = (coap.URI_HOST, b"other")
    out["uri_host_altered"] = outcome(server.unprotect_request, wire(hosted))
    bad_values = {
        "empty": b"",
        "flags_zero": b"\x00",
        "reserved_bit": b"\x29\x14",
        "n_6": b"\x0e\x01\x02\x03\x04\x05\x06",
        "piv_truncated": b"\x0b\x14",
        "kid_context_truncated": b"\x19\x14\x08\x37\xcb",
        "kid_context_no_length": b"\x19\x14",
        "no_kid": b"\x01\x14",
        "no_piv": b"\x08\x01",
        "trailing": b"\x01\x14\x99",
    }
    for name, bad in bad_values.items():
        out["option_" + name] = outcome(server.unprotect_request, with_option(fresh_one, bad))
    plain = request()
    out["not_protected"] = outcome(server.unprotect_request, plain)
    out["error_response"] = hexof(coap.encode(oscore.error_response(plain, oscore.refusal("ReplayError", "seen"))))
    inner_response, _ = client.protect_request(coap.Message(coap.CON, coap.CONTENT, 3, b""))
    out["inner_code_not_request"] = outcome(server.unprotect_request, wire(inner_response))
    # Responses: altered, and one bound to another request.
    first, rid1 = client.protect_request(request())
    second, rid2 = client.protect_request(request())
    _, srid1 = server.unprotect_request(wire(first))
    answer = server.protect_response(coap.Message(coap.ACK, coap.CHANGED, 1, b"", [], b"{}"), srid1)
    adata = coap.encode(answer)
    out["response_ok"] = outcome(client.unprotect_response, coap.decode(adata), rid1)
    out["response_altered"] = outcome(client.unprotect_response, coap.decode(flipped(adata, len(adata) - 3)), rid1)
    out["response_to_other_request"] = outcome(client.unprotect_response, coap.decode(adata), rid2)
    out["response_kid_foreign"] = outcome(client.unprotect_response, with_option(answer, b"\x08\x07"), rid1)
    # A second response to one request (a notification) must not reuse the request's nonce.
    again = server.protect_response(coap.Message(coap.CON, coap.CONTENT, 2, b"", [], b"{}"), srid1)
    out["second_response_option"] = hexof(again.option(oscore.OSCORE))
    out["second_response_ok"] = outcome(client.unprotect_response, wire(again), rid1)
    return out


def run_echo():
    """Appendix B.1.2: a board whose replay window is unknown (rebooted) challenges the first request."""
    client, server = pair(fresh=False)
    before, _ = client.protect_request(request())  # captured by an attacker before the reboot
    outer, rid = client.protect_request(request())
    steps = {}
    try:
        server.unprotect_request(wire(outer))
    except oscore.EchoRequiredError as exc:
        steps["first"] = "EchoRequiredError"
        challenge = server.echo_response(outer, exc.rid)
    steps["challenge_option"] = hexof(challenge.option(oscore.OSCORE))
    got = client.unprotect_response(wire(challenge), rid)
    steps["challenge_code"] = coap.code_str(got.code)
    echo = got.option(oscore.ECHO)
    steps["echo_len"] = len(echo)
    retry = request()
    retry.options.append((oscore.ECHO, echo))
    again, _ = client.protect_request(retry)
    steps["retry"] = outcome(server.unprotect_request, wire(again))
    steps["captured_before"] = outcome(server.unprotect_request, wire(before))
    steps["wrong_echo_first"] = outcome(pair(fresh=False)[1].unprotect_request, wire(again))
    return steps


class MemoryStore:
    def __init__(self):
        self.value = 0
        self.writes = 0

    def load(self):
        return self.value

    def save(self, value):
        self.value = value
        self.writes += 1


def run_reboots(workdir):
    """Power cuts at arbitrary points: no sequence number is ever used twice, and the board keeps talking."""
    stores = {"file": oscore.FileStore(workdir + "/oscore.seq"), "memory": MemoryStore()}
    out = {}
    for name, store in stores.items():
        used = []
        master = oscore.Context(SECRET, b"salt", b"", b"\x01", fresh=True)
        for boot, count in enumerate((5, 40, 0, 1, 33, 64, 2)):
            board = oscore.Context(SECRET, b"salt", b"\x01", b"", store=store)
            for i in range(count):
                outer, _ = board.protect_request(request("rd", mid=boot * 100 + i))
                used.append(coap.read_uint(cose.decode_option(outer.option(oscore.OSCORE))[0]))
                master.unprotect_request(wire(outer))  # the master's window takes every jump
        out[name] = {
            "used": len(used),
            "distinct": len(set(used)),
            "increasing": used == sorted(used),
            "last": used[-1],
            "stored": store.load(),
        }
    out["memory"]["writes"] = stores["memory"].writes
    return out


class Rand:
    """xorshift32: the same mutations under both interpreters."""

    def __init__(self, seed):
        self.state = seed

    def next(self, n):
        x = self.state
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.state = x
        return x % n


def mutate(rnd, data):
    data = bytearray(data)
    kind = rnd.next(5)
    if kind == 0:  # flip a few bits
        for _ in range(1 + rnd.next(3)):
            data[rnd.next(len(data))] ^= 1 << rnd.next(8)
    elif kind == 1:  # truncate
        data = data[: rnd.next(len(data))]
    elif kind == 2:  # insert random bytes
        at = rnd.next(len(data) + 1)
        data[at:at] = bytes(rnd.next(256) for _ in range(1 + rnd.next(8)))
    elif kind == 3:  # overwrite a run of bytes
        at = rnd.next(len(data))
        for i in range(at, min(len(data), at + 1 + rnd.next(6))):
            data[i] = rnd.next(256)
    else:  # random datagram with a plausible header
        data = bytearray([0x40 | rnd.next(9), 0x02, rnd.next(256), rnd.next(256)])
        data.extend(bytes(rnd.next(256) for _ in range(rnd.next(40))))
    return bytes(data)


def run_fuzz(count):
    client, server = pair()
    rnd = Rand(0x2545F491)
    tally = {"decode": 0, "accepted": 0, "crashes": 0}
    crashes = []
    for i in range(count):
        outer, _ = client.protect_request(request(mid=i & 0xFFFF, payload=b'{"eid": "e%d"}' % i))
        data = mutate(rnd, coap.encode(outer))
        try:
            msg = coap.decode(data)
        except coap.DecodeError:
            tally["decode"] += 1
            continue
        except Exception as exc:  # noqa: BLE001
            tally["crashes"] += 1
            crashes.append("decode %s %s" % (type(exc).__name__, hexof(data)))
            continue
        result = outcome(server.unprotect_request, msg)
        if result.startswith("CRASH"):
            tally["crashes"] += 1
            crashes.append(result + " " + hexof(data))
        elif result == "ok":
            tally["accepted"] += 1
        else:
            tally[result] = tally.get(result, 0) + 1
    tally["count"] = count
    tally["examples"] = crashes[:5]
    return tally


with open(sys.argv[1]) as f:
    vectors = json.load(f)
print(
    json.dumps(
        {
            "vectors": run_vectors(vectors),
            "refusals": run_refusals(),
            "echo": run_echo(),
            "reboots": run_reboots(sys.argv[2]),
            "fuzz": run_fuzz(int(sys.argv[3])),
        }
    )
)
