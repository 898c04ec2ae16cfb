"""Adoption of a board that has no identity here (flashed elsewhere, or factory reset).

Layer: device side, application. The board makes up a short code and prints it on its console
("adopt: code ABCD-EFGH"); it announces itself to the master with POST /pair carrying its MAC, a fresh nonce
and proof = SHA-256("proof" ‖ K), K stretched from nonce and code — the code itself never travels — and asks
again every few seconds. Only when a person has typed the code into the dashboard does the master answer with
the identity (device id, name, role, secret), sealed under keys derived from K: HMAC-SHA-256 over IV ‖
ciphertext, then AES-128-CBC. A box that does not verify is ignored. The new identity is merged into
config.json atomically (new file, then rename). Protocol: docs/protocol.md "Adoption"; threat model:
docs/security.md. The master's half is pifleet/fleet/adoption.py.
"""

import json
import os
import sys
from binascii import hexlify, unhexlify
from hashlib import sha256

from agent import coap
from agent.endpoint import Endpoint, RequestError
from agent.port import IS_MICROPYTHON, collect, const, random_bytes, reset_loop, sleep_ms, udp_socket

# CoAP numbers (RFC 7252, 7959), inlined: agent/coap.py keeps only what the tests use by name
_CHANGED = const(68)
_CONTENT_FORMAT = const(12)
_FORBIDDEN = const(131)
_JSON = const(50)
_NOT_FOUND = const(132)
_POST = const(2)
_SERVICE_UNAVAILABLE = const(163)
_URI_PATH = const(11)

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32: no I, L, O, U to misread
_CODE_LENGTH = const(8)  # 40 bits; docs/security.md says why
_ROUNDS = const(10000)  # key stretching; the master uses the same count
_NONCE_LENGTH = const(16)
_RETRY_MIN_MS = const(1000)
_RETRY_MAX_MS = const(60000)
_REFUSED_POLL_MS = const(60000)


def aes_cbc_decrypt(key, iv, data):
    """AES-CBC decryption (no padding removed): cryptolib on MicroPython, `cryptography` under CPython."""
    if IS_MICROPYTHON:
        from cryptolib import aes

        return aes(key, 2, iv).decrypt(data)  # mode 2: CBC
    from agent.cpython import aes_cbc_decrypt

    return aes_cbc_decrypt(key, iv, data)


def new_code():
    return "".join(ALPHABET[b & 31] for b in random_bytes(_CODE_LENGTH))


def shown(code):
    return code[:4] + "-" + code[4:]


def stretch(code, nonce, rounds=_ROUNDS):
    k = sha256(b"pifleet-adopt\x00" + nonce + code.encode()).digest()
    for _ in range(rounds):
        k = sha256(k + nonce).digest()
    return k


def _h(data):
    return sha256(data).digest()


def hmac_sha256(key, msg):
    """RFC 2104 HMAC with SHA-256 (MicroPython has no hmac module); key at most 64 bytes."""
    key = key + bytes(64 - len(key))
    inner = sha256(bytes(b ^ 0x36 for b in key))
    inner.update(msg)
    outer = sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def open_box(k, iv, box, tag):
    """The identity sealed by the master for K; ValueError if it does not verify or decode."""
    expected = hmac_sha256(_h(b"mac" + k), iv + box)
    diff = len(expected) ^ len(tag)
    for a, b in zip(expected, tag):
        diff |= a ^ b  # compare in constant time: no early exit on the first differing byte
    if diff or len(iv) != 16 or not box or len(box) % 16:
        raise ValueError("sealed identity does not verify")
    plain = aes_cbc_decrypt(_h(b"enc" + k)[:16], iv, box)
    pad = plain[-1]
    if not 1 <= pad <= 16:
        raise ValueError("bad padding")
    identity = json.loads(plain[:-pad])
    if not isinstance(identity, dict) or not identity.get("device_id") or not identity.get("secret"):
        raise ValueError("identity incomplete")
    return identity


def save_config(config, path):
    """Write config.json atomically: a power cut leaves the old file or the new one, never half of one."""
    tmp = path + ".new"
    # the key stretching left much garbage; the filesystem driver needs whole blocks (4 KB) in one piece
    collect()
    with open(tmp, "w") as f:
        json.dump(config, f)
    os.rename(tmp, path)


def adopted_config(config, identity):
    out = dict(config)
    for key in ("device_id", "name", "role", "secret", "oscore_id"):
        if identity.get(key):
            out[key] = identity[key]
    return out


def mac_address():
    import network

    raw = network.WLAN(network.STA_IF).config("mac")
    return ":".join("%02x" % b for b in raw)


class Adoption:
    def __init__(self, endpoint, locate, info):
        self.endpoint = endpoint
        self.locate = locate  # coroutine function: the master's address, or None
        self.info = info  # mac, chip, fw, mpy, agent for the announcement
        self.code = new_code()
        self.nonce = random_bytes(_NONCE_LENGTH)

    async def run(self):
        """Announce and poll until a person confirmed our code; return the identity the master sealed."""
        print("adopt: code %s" % shown(self.code))
        print("adopt: no identity here; confirm this code in the pifleet dashboard (or: pifleet adopt confirm)")
        k = stretch(self.code, self.nonce)
        body = dict(self.info)
        body["nonce"] = hexlify(self.nonce).decode()
        body["proof"] = hexlify(_h(b"proof" + k)).decode()
        payload = json.dumps(body).encode()
        options = coap.path_options(_URI_PATH, "pair") + [(_CONTENT_FORMAT, coap.uint(_JSON))]
        retry = _RETRY_MIN_MS
        master = None
        while True:
            wait = retry
            try:
                if master is None:
                    master = await self.locate()
                if master is not None:
                    response = await self.endpoint.request(master, _POST, options, payload)
                    answer = json.loads(response.payload or b"{}")
                    state = answer.get("state") if isinstance(answer, dict) else None
                    retry = _RETRY_MIN_MS
                    if response.code == _CHANGED and state == "adopted":
                        try:
                            return open_box(
                                k, unhexlify(answer["iv"]), unhexlify(answer["box"]), unhexlify(answer["tag"])
                            )
                        except (ValueError, KeyError, TypeError) as exc:
                            print("adopt: ignoring an identity that does not verify:", exc)
                    elif response.code == _CHANGED and state == "waiting":
                        wait = int(answer.get("poll", 3)) * 1000
                    elif response.code == _FORBIDDEN:
                        print("adopt: the master refused this board (%s); restart it for a new code" % state)
                        wait = _REFUSED_POLL_MS
                    else:
                        print("adopt: master answered", coap.code_str(response.code), response.payload[:80])
                        wait = _RETRY_MAX_MS if response.code == _SERVICE_UNAVAILABLE else retry
            except RequestError as exc:
                print("adopt: master did not answer:", exc)
                master = None  # look for it again
                retry = min(retry * 2, _RETRY_MAX_MS)
            except ValueError as exc:  # a garbled answer: ask again
                print("adopt: bad answer:", exc)
            await sleep_ms(wait)


def board_info(agent_version):
    from agent import port
    from agent.register import implementation

    _, mpy, fw = implementation()
    chip = port.MACHINE or getattr(sys.implementation, "_machine", sys.platform)
    return {"mac": mac_address(), "chip": chip[:40], "fw": fw, "mpy": mpy, "agent": agent_version}


async def _unpaired(msg, addr):
    """An unpaired board offers nothing but its adoption: every request is 4.04 until it has an identity."""
    return _NOT_FOUND, [], b""


def adopt_identity(config, ip, locate, version, path):
    """Get an identity by adoption (a person confirms our code); write it into config.json; return the config.

    None when stopped by Ctrl-C before that."""
    import asyncio

    sock = udp_socket(ip, int(config.get("listen_port", 5683)))
    endpoint = Endpoint(sock, _unpaired)

    async def adopt_main():
        serving = asyncio.create_task(endpoint.serve())
        try:
            return await Adoption(endpoint, locate, board_info(version)).run()
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
    config = adopted_config(config, identity)
    save_config(config, path)
    print("adopt: adopted as %s (%s); starting as a paired board" % (config["device_id"], config.get("name")))
    return config
