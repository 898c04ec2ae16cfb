"""Key derivation for OSCORE (RFC 8613 §3.2): HKDF-SHA-256 (RFC 5869) and the KDF's CBOR info.

Layer: device side, pure, below agent/oscore.py. Used only while a security context is made (at boot): oscore.py
imports it then and forgets it, so its code does not stay in the heap. CBOR is written by hand for exactly these
shapes (byte strings, small unsigned integers, text, null, arrays of up to 23 items).
"""

import hashlib

from agent.port import const

ALG = const(10)  # COSE AES-CCM-16-64-128, the only algorithm


def _head(major, n):
    """CBOR head of a major type with argument n < 65536."""
    if n < 24:
        return bytes((major << 5 | n,))
    if n < 256:
        return bytes((major << 5 | 24, n))
    return bytes((major << 5 | 25, n >> 8, n & 0xFF))


def _bstr(data):
    return _head(2, len(data)) + data


def _hmac(key, data):
    """HMAC-SHA-256 (RFC 2104); hashlib has no hmac on MicroPython."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key + bytes(64 - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(data)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def hkdf(salt, ikm, info, length):
    """HKDF-SHA-256 (RFC 5869). An empty salt is HMAC's all-zero key, as RFC 5869 asks."""
    prk = _hmac(salt, ikm)
    out = b""
    block = b""
    i = 1
    while len(out) < length:
        block = _hmac(prk, block + info + bytes((i,)))
        out += block
        i += 1
    return out[:length]


def kdf_info(ident, id_context, kind, length):
    """CBOR [id, id_context / null, alg_aead, type, L] (RFC 8613 §3.2.1)."""
    ctx = b"\xf6" if id_context is None else _bstr(id_context)
    return b"\x85" + _bstr(ident) + ctx + _head(0, ALG) + _head(3, len(kind)) + kind + _head(0, length)


def derive(salt, secret, ident, id_context, kind, length):
    """One key or IV of a security context: HKDF(salt, secret, info of [ident, id_context, alg, kind, length])."""
    return hkdf(salt, secret, kdf_info(ident, id_context, kind, length), length)


def keys(salt, secret, sender_id, recipient_id, id_context):
    """(sender key, recipient key, common IV) of a security context (RFC 8613 §3.2.1; AES-CCM-16-64-128)."""
    return (
        derive(salt, secret, sender_id, id_context, b"Key", 16),
        derive(salt, secret, recipient_id, id_context, b"Key", 16),
        derive(salt, secret, b"", id_context, b"IV", 13),
    )
