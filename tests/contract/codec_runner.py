# Runs the agent's CoAP codec over codec_vectors.json and prints one JSON object of results.
# Written for both interpreters: `micropython codec_runner.py VECTORS` and CPython, so one test checks both.
# Usage: codec_runner.py VECTORS_JSON  (the agent package must be importable).
import json
import sys

from agent import coap


def hexof(data):
    return "".join("%02x" % b for b in data)


def unhex(text):
    return bytes(int(text[i : i + 2], 16) for i in range(0, len(text), 2))


def as_dict(msg):
    return {
        "type": msg.type,
        "code": msg.code,
        "mid": msg.mid,
        "token": hexof(msg.token),
        "options": [[n, hexof(v)] for n, v in msg.options],
        "payload": hexof(msg.payload),
    }


def from_dict(d):
    return coap.Message(
        d["type"], d["code"], d["mid"], unhex(d["token"]), [(n, unhex(v)) for n, v in d["options"]], unhex(d["payload"])
    )


def decode_case(hextext):
    try:
        msg = coap.decode(unhex(hextext))
    except coap.DecodeError as exc:
        return {"error": True, "is_value_error": isinstance(exc, ValueError)}
    return {"msg": as_dict(msg), "roundtrip": hexof(coap.encode(msg))}


def read_block_error(hextext):
    try:
        coap.read_block(unhex(hextext))
    except coap.DecodeError as exc:
        return {"error": True, "is_value_error": isinstance(exc, ValueError)}
    return {"error": False}


with open(sys.argv[1]) as f:
    vectors = json.load(f)
results = {
    "decode": [decode_case(c["hex"]) for c in vectors["decode"]],
    "malformed": [decode_case(c["hex"]) for c in vectors["malformed"]],
    "encode": [hexof(coap.encode(from_dict(c["msg"]))) for c in vectors["encode"]],
    "uint": [[hexof(coap.uint(v)), coap.read_uint(coap.uint(v))] for v, _ in vectors["uint"]],
    "block": [[hexof(coap.block_value(n, m, s)), list(coap.read_block(unhex(h)))] for n, m, s, h in vectors["block"]],
    "block_malformed": [read_block_error(h) for h in vectors["block_malformed"]],
}
print(json.dumps(results))
