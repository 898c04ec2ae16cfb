"""OSCORE (RFC 8613): end-to-end protection of the agent's CoAP messages. AES-CCM-16-64-128, HKDF-SHA-256.

Layer: device side, pure: coap.Message in, coap.Message out; no sockets, no clock, no files but through the
sequence-number store it is given. It does not choose contexts, message types or MIDs, nor answer anyone:
the endpoint does (error_response() and Context.echo_response() build what RFC 8613 §8 and Appendix B.1.2 ask
for). Malformed or hostile input raises an OscoreError, never anything else.
"""

from agent import coap
from agent.ccm import NONCE_LEN, Ccm
from agent.cose import aad, decode_option, encode_option
from agent.port import const, forget, random_bytes

# CoAP numbers (RFC 7252, 7959), inlined: agent/coap.py keeps only what the tests use by name
_ACK = const(2)
_BAD_OPTION = const(130)
_BAD_REQUEST = const(128)
_CHANGED = const(68)
_CON = const(0)
_CONTENT = const(69)
_MAX_AGE = const(14)
_NON = const(1)
_OBSERVE = const(6)
_POST = const(2)
_SERVICE_UNAVAILABLE = const(163)

OSCORE = const(9)  # option number
ECHO = const(252)  # RFC 9175
FETCH = const(5)
UNAUTHORIZED = const(129)  # 4.01

_MAX_ID = const(7)  # NONCE_LEN - 6
_WINDOW = const(32)  # replay window (RFC 8613 §7.4 default)
_ALL_SEEN = 0xFFFFFFFF  # a full window: not a const, it does not fit a 32-bit port's small int
_SEQ_LIMIT = 1 << 40  # Partial IVs have at most 5 bytes
_SEQ_STEP = const(32)  # sequence numbers reserved per write of the store (Appendix B.1.1)

# Class U options stay outside (RFC 8613 §4.1): Uri-Host, Uri-Port, Proxy-Uri, Proxy-Scheme. Observe is both.
# Every other option, known or not, is class E and travels encrypted.
_OUTER = (3, 7, 35, 39)


class OscoreError(Exception):
    """A message OSCORE refuses. code and diag: the unprotected answer RFC 8613 §8.2 suggests; reason: which
    refusal it is. Only the two refusals callers catch by name have classes of their own (a class costs heap);
    the others are OscoreErrors from refusal(), told apart by their reason."""

    code = _BAD_REQUEST
    diag = "OSCORE error"
    reason = "OscoreError"


class DecodeError(OscoreError):
    """Missing or malformed OSCORE option, or plaintext that is not a CoAP message."""

    code = _BAD_OPTION
    diag = "Failed to decode COSE"
    reason = "DecodeError"


class EchoRequiredError(OscoreError):
    """A verified request while the replay window is unknown (after a reboot): answer echo_response()."""

    code = UNAUTHORIZED
    diag = "Replay detected"
    reason = "EchoRequiredError"

    def __init__(self, rid):
        super().__init__("replay window not initialised")
        self.rid = rid


def refusal(reason, message):
    """An OscoreError for a refusal nobody catches by name. reason: "UnknownKidError" (a kid or kid context this
    context does not receive from), "AuthError" (the tag does not verify: altered, or sealed under another key),
    "ReplayError" (a sequence number the window has seen), "StaleError" (older than the window reaches: it may
    have been seen) or "ExhaustedError" (all 2^40 sequence numbers used: the context needs new keying)."""
    exc = OscoreError(message)
    exc.reason = reason
    if reason == "AuthError":
        exc.diag = "Decryption failed"
    elif reason == "ExhaustedError":
        exc.code = _SERVICE_UNAVAILABLE
    else:
        exc.code = UNAUTHORIZED
        exc.diag = "Security context not found" if reason == "UnknownKidError" else "Replay detected"
    return exc


def _header(msg):
    """(piv, kid_context, kid) from a message's OSCORE option, or DecodeError."""
    value = msg.option(OSCORE)
    if value is None:
        raise DecodeError("no OSCORE option")
    try:
        return decode_option(value)
    except ValueError:
        raise DecodeError("malformed OSCORE option")


def _split(msg):
    """(outer options, inner options) of a plain message (§4.1)."""
    outer = []
    inner = []
    for opt in msg.options:
        if opt[0] in _OUTER:
            outer.append(opt)
        else:
            inner.append(opt)
            if opt[0] == _OBSERVE:
                outer.append(opt)
    return outer, inner


def _plaintext(code, options, payload):
    """Code byte, inner options, 0xFF and payload (§5.3): the codec's encoding from the header's last byte.

    That byte is the MID's low byte: with the code as MID it is the code byte, and nothing is copied again.
    """
    return memoryview(coap.encode(coap.Message(_CON, code, code, b"", options, payload)))[3:]


def _parse(plaintext):
    """(code, options, payload) of a decrypted plaintext, parsed in place by the codec (no copy of it first)."""
    if not plaintext:
        raise DecodeError("empty plaintext")
    inner = coap.Message()
    try:
        coap.decode_options(plaintext, 1, inner)
    except coap.DecodeError:
        raise DecodeError("malformed inner options")
    return plaintext[0], inner.options, inner.payload


def _piv(seq):
    """Partial IV: the sequence number in the fewest big-endian bytes, at least one."""
    return coap.uint(seq) or b"\x00"


def error_response(request, exc):
    """The unprotected answer to a refused request (§8.2): exc.code, Max-Age 0 so no proxy keeps it, exc.diag.

    An ACK for a CON; for a NON the endpoint gives it a MID of its own.
    """
    mtype = _ACK if request.type == _CON else _NON
    return coap.Message(mtype, exc.code, request.mid, request.token, [(_MAX_AGE, b"")], exc.diag.encode())


class FileStore:
    """The sender's sequence-number high-water mark in a small file, replaced whole (PATH.new, then renamed)."""

    def __init__(self, path):
        self.path = path

    def load(self):
        """The stored mark; 0 for a context that never sent. A damaged file raises: guessing could reuse nonces."""
        try:
            with open(self.path) as f:
                text = f.read()
        except OSError as exc:
            if exc.errno == 2:  # ENOENT
                return 0
            raise
        return int(text)

    def save(self, value):
        from agent.port import os

        with open(self.path + ".new", "w") as f:
            f.write(str(value))
        os.rename(self.path + ".new", self.path)


class Context:
    """One OSCORE security context (§3): both directions between this agent and one peer.

    store (load()/save(n), e.g. FileStore) keeps sequence numbers unique across reboots: every _SEQ_STEP
    messages it is told a mark no number at or above has been used; at boot sending resumes from that mark.
    fresh=True only for keying material never used before: otherwise the replay window starts unknown and the
    first request is answered with an Echo challenge (Appendix B.1.2), since requests from before a reboot
    could be replayed.
    """

    def __init__(self, secret, salt, sender_id, recipient_id, id_context=None, store=None, seq=0, fresh=False):
        if len(sender_id) > _MAX_ID or len(recipient_id) > _MAX_ID:
            raise ValueError("sender and recipient ids have at most 7 bytes")
        self.sender_id = sender_id
        self.recipient_id = recipient_id
        self.id_context = id_context
        from agent import kdf  # needed only here: forgotten once the keys are made

        try:
            self.sender_key, self.recipient_key, self.common_iv = kdf.keys(
                salt, secret, sender_id, recipient_id, id_context
            )
        finally:
            forget("kdf")
        self._send = Ccm(self.sender_key)
        self._recv = Ccm(self.recipient_key)
        self._store = store
        self.seq = max(seq, store.load()) if store is not None else seq
        self._mark = self.seq  # numbers below the mark may have been used before a reboot; none at or above
        # Replay window: _top is the highest sequence number accepted, bit i of _seen is top - i. None: unknown.
        self._top = -1 if fresh else None
        self._seen = 0
        self.echo = random_bytes(8)

    def nonce(self, id_piv, piv):
        """AEAD nonce (§5.2): common IV XOR (length of id, id padded to 7 bytes, piv padded to 5 bytes)."""
        n = bytearray(NONCE_LEN)
        n[0] = len(id_piv)
        n[8 - len(id_piv) : 8] = id_piv
        n[NONCE_LEN - len(piv) :] = piv
        iv = self.common_iv
        for i in range(NONCE_LEN):
            n[i] ^= iv[i]
        return n

    def _next_piv(self):
        seq = self.seq
        if seq >= _SEQ_LIMIT:
            raise refusal("ExhaustedError", "sequence numbers exhausted")
        if self._store is not None and seq >= self._mark:
            self._mark = seq + _SEQ_STEP
            self._store.save(self._mark)  # before the number is used: a power cut now skips, never repeats
        self.seq = seq + 1
        return _piv(seq)

    def protect_request(self, msg):
        """(outer message, rid): POST (FETCH with Observe) carrying the encrypted request. rid, the request
        id [kid, piv, observe, nonce unused], is what protecting or unprotecting its response needs."""
        outer, inner = _split(msg)
        kid = self.sender_id
        piv = self._next_piv()
        observe = msg.option(_OBSERVE) is not None
        outer.append((OSCORE, encode_option(piv, self.id_context, kid)))
        body = self._send.encrypt(self.nonce(kid, piv), aad(kid, piv), _plaintext(msg.code, inner, msg.payload))
        rid = [kid, piv, observe, True]
        return coap.Message(msg.type, FETCH if observe else _POST, msg.mid, msg.token, outer, body), rid

    def unprotect_request(self, msg):
        """(inner request, rid) of a protected request, or an OscoreError; the window moves only for a
        request that verified."""
        piv, kid_context, kid = _header(msg)
        if kid is None or not piv:
            raise DecodeError("request without kid or partial IV")
        if kid != self.recipient_id or (kid_context is not None and kid_context != self.id_context):
            raise refusal("UnknownKidError", "unknown kid")
        seq = coap.read_uint(piv)
        if self._top is not None:
            self._check(seq)  # before decrypting: a replay costs nothing
        rid = [kid, piv, msg.code == FETCH, True]
        plain = self._recv.decrypt(self.nonce(kid, piv), aad(kid, piv), msg.payload)
        if plain is None:
            raise refusal("AuthError", "tag does not verify")
        code, options, payload = _parse(plain)
        if not 1 <= code <= 31:
            raise DecodeError("inner code is not a request")
        if self._top is None:
            if _option(options, ECHO) != self.echo:
                rid[3] = False  # it may be a replay: its nonce may have served a response already
                raise EchoRequiredError(rid)
            self._top = seq  # fresh, proven by the Echo: it and every older number are spent
            self._seen = _ALL_SEEN
        else:
            self._accept(seq)
        options = [opt for opt in msg.options if opt[0] in _OUTER] + options
        return coap.Message(msg.type, code, msg.mid, msg.token, options, payload), rid

    def protect_response(self, msg, rid, fresh=False):
        """The outer response: 2.04 (2.05 for Observe) carrying the encrypted one. The first response to a
        request reuses its nonce (no Partial IV, empty OSCORE option); any later one (notifications), or one
        with fresh=True, gets a sequence number of its own: a nonce never encrypts two plaintexts."""
        kid, piv, observe, reusable = rid
        outer, inner = _split(msg)
        if fresh or not reusable:
            own = self._next_piv()
            nonce = self.nonce(self.sender_id, own)
            outer.append((OSCORE, encode_option(own, None, None)))
        else:
            rid[3] = False
            nonce = self.nonce(kid, piv)
            outer.append((OSCORE, b""))
        body = self._send.encrypt(nonce, aad(kid, piv), _plaintext(msg.code, inner, msg.payload))
        return coap.Message(msg.type, _CONTENT if observe else _CHANGED, msg.mid, msg.token, outer, body)

    def unprotect_response(self, msg, rid):
        """The inner response to the request protect_request() returned `rid` for, or an OscoreError."""
        piv, kid_context, kid = _header(msg)
        if (kid is not None and kid != self.recipient_id) or (
            kid_context is not None and kid_context != self.id_context
        ):
            raise refusal("UnknownKidError", "unknown kid")
        rkid, rpiv = rid[0], rid[1]
        nonce = self.nonce(self.recipient_id, piv) if piv else self.nonce(rkid, rpiv)
        plain = self._recv.decrypt(nonce, aad(rkid, rpiv), msg.payload)
        if plain is None:
            raise refusal("AuthError", "tag does not verify")
        code, options, payload = _parse(plain)
        if code < 64:
            raise DecodeError("inner code is not a response")
        return coap.Message(msg.type, code, msg.mid, msg.token, options, payload)

    def echo_response(self, msg, rid):
        """4.01 with our Echo value, protected with a Partial IV of its own (the request may be a replay whose
        nonce served a response before): the client repeats its request with the Echo (Appendix B.1.2)."""
        mtype = _ACK if msg.type == _CON else _NON
        answer = coap.Message(mtype, UNAUTHORIZED, msg.mid, msg.token, [(ECHO, self.echo)])
        return self.protect_response(answer, rid, fresh=True)

    def _check(self, seq):
        if seq > self._top:
            return
        age = self._top - seq
        if age >= _WINDOW:
            raise refusal("StaleError", "older than the replay window")
        if (self._seen >> age) & 1:
            raise refusal("ReplayError", "sequence number seen")

    def _accept(self, seq):
        if seq > self._top:
            shift = seq - self._top
            self._seen = ((self._seen << shift) | 1) & _ALL_SEEN if shift < _WINDOW else 1
            self._top = seq
        else:
            self._seen |= 1 << (self._top - seq)


def _option(options, number):
    for num, value in options:
        if num == number:
            return value
    return None
