"""Turn what a host capability got (database rows, a Python function's return value) into plain JSON.

Layer: helper of the process-target capabilities (db, python); CPython only; not a capability itself (no
NAME), copied next to them into caps/. The agent answers with json.dumps, which knows only dict, list, str,
numbers, booleans and None, so everything else is converted here and never fails:

    datetime, date, time      ISO 8601 string          Decimal   float when exact, else string
    timedelta                 seconds (float)          UUID      string
    bytes                     hex string               NaN/inf   string ("nan", "inf")
    mapping / record          object (keys as text)    tuple/set list
    anything else             str(value)

Size: the agent answers in one CoAP message (it has no block-wise transfer, RFC 7959, for responses yet), and
the master reads datagrams of up to 4096 bytes; MAX_BYTES keeps a result, with the answer's envelope, below that.
"""

import datetime
import decimal
import json
import math
import uuid

MAX_BYTES = 3072


class TooLargeError(Exception):
    """A result that does not fit in one answer → 5.00."""

    def __repr__(self):
        return str(self)  # the agent answers a 5.00 with repr(exc): make it read as a sentence


def size(value):
    """Bytes of value in the agent's answer (json.dumps with its default separators, ASCII only)."""
    return len(json.dumps(value))


def check_size(value, limit=MAX_BYTES):
    n = size(value)
    if n > limit:
        raise TooLargeError(
            "result too large: %d bytes of JSON, an answer carries at most %d "
            "(return less, or write it to a database and return its key)" % (n, limit)
        )
    return value


def _decimal(value):
    if value.is_finite():
        as_float = float(value)
        if decimal.Decimal(repr(as_float)) == value:
            return int(value) if value == value.to_integral_value() and abs(value) < 2**53 else as_float
    return str(value)


def jsonsafe(value):
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal):
        return _decimal(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, dict) or hasattr(value, "items"):  # dicts, asyncpg Records, other mappings
        return {str(k): jsonsafe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonsafe(v) for v in value]
    return str(value)
