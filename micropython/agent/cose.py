"""The COSE and CBOR pieces OSCORE (RFC 8613) needs for every message: the Enc_structure and the OSCORE option
value that stands for the compressed COSE object's header (§6). Key derivation (HKDF-SHA-256 and the KDF's
info) is in agent/kdf.py, loaded only while a context is made.

Layer: device side, pure, below agent/oscore.py. CBOR is written by hand for exactly these shapes (byte
strings, small unsigned integers, arrays of up to 23 items): nothing here parses CBOR.
"""


def aad(request_kid, request_piv):
    """Enc_structure ["Encrypt0", h'', external_aad], external_aad = [1, [alg], kid, piv, h''] (§5.4).

    Built in one buffer (it is made for every message): a kid has at most 7 bytes and a Partial IV at most 5,
    so every length here fits the CBOR head's own byte.
    """
    k = len(request_kid)
    p = len(request_piv)
    n = 7 + k + p  # external_aad's length
    out = bytearray(12 + n)
    out[:11] = b"\x83\x68Encrypt0\x40"
    out[11] = 0x40 | n
    out[12:16] = b"\x85\x01\x81\x0a"  # [1, [10], …
    out[16] = 0x40 | k
    out[17 : 17 + k] = request_kid
    out[17 + k] = 0x40 | p
    out[18 + k : 18 + k + p] = request_piv
    out[-1] = 0x40  # … h''] : no class I options
    return out


def encode_option(piv, kid_context, kid):
    """OSCORE option value (§6.1): flags (n = len(piv), k, h), piv, s + kid context, kid; empty if all absent."""
    if not piv and kid is None and kid_context is None:
        return b""
    flags = len(piv) | (0 if kid is None else 0x08) | (0 if kid_context is None else 0x10)
    out = bytes((flags,)) + piv
    if kid_context is not None:
        out += bytes((len(kid_context),)) + kid_context
    if kid is not None:
        out += kid
    return out


def decode_option(value):
    """(piv, kid_context, kid) of an OSCORE option value; kid and kid_context are None when absent.

    ValueError for reserved flags or lengths that run past the value."""
    if not value:
        return b"", None, None
    flags = value[0]
    n = flags & 7
    if flags & 0xE0 or n > 5 or flags == 0:  # reserved bits, reserved lengths; all-zero flags must be empty
        raise ValueError("reserved OSCORE flags")
    end = len(value)
    pos = 1 + n
    if pos > end:
        raise ValueError("truncated partial IV")
    piv = bytes(value[1:pos])
    kid_context = None
    if flags & 0x10:
        if pos >= end or pos + 1 + value[pos] > end:
            raise ValueError("truncated kid context")
        kid_context = bytes(value[pos + 1 : pos + 1 + value[pos]])
        pos += 1 + value[pos]
    if flags & 0x08:
        return piv, kid_context, bytes(value[pos:])
    if pos != end:
        raise ValueError("trailing bytes")
    return piv, kid_context, None
