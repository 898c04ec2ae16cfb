"""CoAP message codec (RFC 7252 §3): bytes in, Message out, and back.

Layer: device side, pure. No sockets, no clock, no asyncio: it is tested against literal bytes under both
MicroPython and CPython. decode() raises DecodeError (a ValueError) for anything malformed; it never returns
a half-parsed message.
"""

from agent.port import const

# The numbers of RFC 7252 and 7959. A name without "_" is a module attribute on the board (a dict entry and an
# interned name in the heap): only the ones tests and tools use by name are. The other agent modules declare
# the numbers they use as const()s of their own, which mpy-cross inlines.
_VERSION = const(1)

# Message types
CON = const(0)
NON = const(1)
ACK = const(2)
RST = const(3)

# Codes are kept as the single byte of the header: class << 5 | detail.
EMPTY = const(0)
GET = const(1)
POST = const(2)
PUT = const(3)
DELETE = const(4)
_CREATED = const(65)  # 2.01
DELETED = const(66)  # 2.02
_VALID = const(67)  # 2.03
CHANGED = const(68)  # 2.04
CONTENT = const(69)  # 2.05
_CONTINUE = const(95)  # 2.31 (RFC 7959)
_BAD_REQUEST = const(128)  # 4.00
_BAD_OPTION = const(130)  # 4.02
_FORBIDDEN = const(131)  # 4.03
NOT_FOUND = const(132)  # 4.04
_METHOD_NOT_ALLOWED = const(133)  # 4.05
_REQUEST_ENTITY_INCOMPLETE = const(136)  # 4.08 (RFC 7959)
_REQUEST_ENTITY_TOO_LARGE = const(141)  # 4.13
_UNSUPPORTED_FORMAT = const(143)  # 4.15
_INTERNAL_ERROR = const(160)  # 5.00
_SERVICE_UNAVAILABLE = const(163)  # 5.03

# Option numbers used by the agent
URI_HOST = const(3)
_ETAG = const(4)
_OBSERVE = const(6)
_URI_PORT = const(7)
_LOCATION_PATH = const(8)
URI_PATH = const(11)
CONTENT_FORMAT = const(12)
_MAX_AGE = const(14)
URI_QUERY = const(15)
_ACCEPT = const(17)
_LOCATION_QUERY = const(20)
_BLOCK2 = const(23)
_BLOCK1 = const(27)
_SIZE2 = const(28)
_SIZE1 = const(60)

# Content formats
_LINK_FORMAT = const(40)
_JSON = const(50)

_PAYLOAD_MARKER = const(0xFF)


class DecodeError(ValueError):
    """A datagram that is not a well-formed CoAP message."""


class Message:
    """One CoAP message. options is a list of (number, bytes) in wire order."""

    __slots__ = ("type", "code", "mid", "token", "options", "payload")

    def __init__(self, type=CON, code=EMPTY, mid=0, token=b"", options=None, payload=b""):
        self.type = type
        self.code = code
        self.mid = mid
        self.token = token
        self.options = options if options is not None else []
        self.payload = payload

    def option(self, number):
        """The first value of an option, or None."""
        for num, value in self.options:
            if num == number:
                return value
        return None

    def option_values(self, number):
        return [value for num, value in self.options if num == number]

    def path(self):
        """Uri-Path as one string without the leading slash: 'a/blind/move'."""
        return "/".join(v.decode() for v in self.option_values(URI_PATH))

    def is_request(self):
        return 1 <= self.code <= 31

    def is_response(self):
        return self.code >= 64


def code_str(code):
    """'2.05' for 69 — for logs and errors."""
    return "%d.%02d" % (code >> 5, code & 31)


def uint(value):
    """Minimal big-endian bytes of a non-negative integer option value (0 is empty)."""
    n = 0
    while value >> (8 * n):
        n += 1
    return value.to_bytes(n, "big")


def read_uint(data):
    value = 0
    for byte in data or b"":
        value = (value << 8) | byte
    return value


def block_value(num, more, szx):
    """Block1/Block2 option value (RFC 7959 §2.2): NUM << 4 | M << 3 | SZX in the fewest bytes (0 is empty)."""
    return uint((num << 4) | (8 if more else 0) | szx)


def read_block(value):
    """(num, more, szx) of a Block1/Block2 option value; DecodeError if it is longer than 3 bytes.

    SZX 7 (BERT, only for reliable transports) is returned as it is: refusing it is the caller's business.
    """
    if len(value) > 3:
        raise DecodeError("block option longer than 3 bytes")
    value = read_uint(value)
    return value >> 4, bool(value & 8), value & 7


def path_options(number, path):
    """[(number, b'seg'), ...] for 'rd/1' — Uri-Path or Location-Path style."""
    return [(number, seg.encode()) for seg in path.split("/") if seg]


def _ext(nibble_value, buf, pos):
    """Resolve a delta/length nibble with its extension bytes; return (value, new_pos)."""
    if nibble_value < 13:
        return nibble_value, pos
    if nibble_value == 13:
        if pos >= len(buf):
            raise DecodeError("truncated option extension")
        return buf[pos] + 13, pos + 1
    if nibble_value == 14:
        if pos + 1 >= len(buf):
            raise DecodeError("truncated option extension")
        return ((buf[pos] << 8) | buf[pos + 1]) + 269, pos + 2
    raise DecodeError("reserved option nibble 15")


def decode(buf):
    """Parse one datagram into a Message; raise DecodeError if it is malformed."""
    n = len(buf)
    if n < 4:
        raise DecodeError("shorter than a header")
    b0 = buf[0]
    if b0 >> 6 != _VERSION:
        raise DecodeError("unknown version")
    tkl = b0 & 0x0F
    if tkl > 8:
        raise DecodeError("token length > 8")
    code = buf[1]
    if 4 + tkl > n:
        raise DecodeError("truncated token")
    msg = Message((b0 >> 4) & 3, code, (buf[2] << 8) | buf[3], bytes(buf[4 : 4 + tkl]))
    if code == EMPTY and (tkl or n > 4):
        raise DecodeError("empty message with content")
    decode_options(buf, 4 + tkl, msg)
    return msg


def decode_options(buf, pos, msg):
    """Options and payload of buf from pos on, into msg (OSCORE's plaintext is parsed in place with this).

    The option values and the payload are copied out once; buf may be a bytearray or a memoryview."""
    n = len(buf)
    number = 0
    while pos < n:
        byte = buf[pos]
        pos += 1
        if byte == _PAYLOAD_MARKER:
            if pos == n:
                raise DecodeError("payload marker without payload")
            msg.payload = bytes(buf[pos:])
            break
        delta, pos = _ext(byte >> 4, buf, pos)
        length, pos = _ext(byte & 0x0F, buf, pos)
        if pos + length > n:
            raise DecodeError("option longer than datagram")
        number += delta
        msg.options.append((number, bytes(buf[pos : pos + length])))
        pos += length


def _nibble(value, out):
    """Append the extension bytes for value to out; return its 4-bit nibble."""
    if value < 13:
        return value
    if value < 269:
        out.append(value - 13)
        return 13
    value -= 269
    out.append(value >> 8)
    out.append(value & 0xFF)
    return 14


def encode(msg):
    """Serialise a Message to bytes. Options are sorted by number, keeping the order of repeats."""
    token = msg.token
    out = bytearray(4)
    out[0] = (_VERSION << 6) | (msg.type << 4) | len(token)
    out[1] = msg.code
    out[2] = (msg.mid >> 8) & 0xFF
    out[3] = msg.mid & 0xFF
    out.extend(token)
    # MicroPython's sorted() is not stable: sort by (number, index) so repeated options keep their order.
    order = sorted(range(len(msg.options)), key=lambda i: (msg.options[i][0], i))
    last = 0
    for i in order:
        number, value = msg.options[i]
        ext = bytearray()
        hi = _nibble(number - last, ext)
        lo = _nibble(len(value), ext)
        out.append((hi << 4) | lo)
        out.extend(ext)
        out.extend(value)
        last = number
    if msg.payload:
        out.append(_PAYLOAD_MARKER)
        out.extend(msg.payload)
    return bytes(out)
