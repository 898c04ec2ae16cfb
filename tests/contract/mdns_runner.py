"""Runs under MicroPython (and CPython): decode the packets given as hex on stdin with agent.mdns; print JSON."""

import json
import sys
from binascii import unhexlify

from agent import mdns

cases = json.loads(sys.stdin.read())
out = []
for case in cases:
    data = unhexlify(case)
    try:
        records = mdns.parse(data)
        found = mdns.pick(records)
        out.append(
            {
                "records": [[n, t, d if not isinstance(d, tuple) else list(d)] for n, t, d in records],
                "found": list(found) if found else None,
            }
        )
    except ValueError:
        out.append({"error": "ValueError"})
    except Exception as exc:  # anything else is a bug: a malformed packet must be a ValueError
        out.append({"error": "other: %r" % exc})
print(json.dumps(out))
print(json.dumps({"query": mdns.query("_coap._udp.local", 0x1234).hex() if hasattr(bytes, "hex") else None}))
