"""Finding the master by multicast DNS (RFC 6762) and DNS-SD (RFC 6763): one query, one answer.

Layer: device side, application edge. MicroPython has no service browser, so this is the smallest client
that does the job: it asks once for the PTR records of `_coap._udp.local` and takes the first instance whose
TXT record says `rt=core.rd` (the master's resource directory, RFC 9176), reading its SRV (port, host) and A
(address) records from the same answer. The question carries the QU bit and leaves from an ephemeral port,
so responders answer by unicast straight back to us (RFC 6762 §5.4, §6.7): no multicast group to join.

parse() is pure (bytes in, records out; ValueError for anything malformed), tested against literal bytes.
find() never raises for network trouble: no answer or only garbage within the timeout gives None.
"""

import asyncio
import struct

from agent.port import const, peer_of, recvfrom, sockaddr, ticks_add, ticks_diff, ticks_ms, udp_socket, wait_for_ms

SERVICE = "_coap._udp.local"
GROUP = "224.0.0.251"
PORT = const(5353)

TYPE_A = const(1)
TYPE_PTR = const(12)
TYPE_TXT = const(16)
TYPE_SRV = const(33)
_CLASS_IN_QU = const(0x8001)  # class IN with the "unicast response wanted" bit
_FLAG_RESPONSE = const(0x8000)
_MAX_POINTERS = const(16)  # a name with more compression jumps than this is a loop
_MAX_PACKET = const(1500)


def query(service=SERVICE, qid=0):
    """The bytes of a one-question mDNS query for the PTR records of `service`."""
    out = bytearray(struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0))
    for label in service.split("."):
        out.append(len(label))
        out += label.encode()
    out.append(0)
    out += struct.pack(">HH", TYPE_PTR, _CLASS_IN_QU)
    return bytes(out)


def _name(buf, pos):
    """Read a domain name at pos (following compression pointers); return (name, position after it)."""
    labels = []
    after = -1
    jumps = 0
    while True:
        if pos >= len(buf):
            raise ValueError("name runs past the packet")
        n = buf[pos]
        if n & 0xC0 == 0xC0:
            if pos + 1 >= len(buf) or jumps >= _MAX_POINTERS:
                raise ValueError("bad compression pointer")
            if after < 0:
                after = pos + 2
            pos = (n & 0x3F) << 8 | buf[pos + 1]
            jumps += 1
            continue
        if n & 0xC0:
            raise ValueError("unknown label type")
        pos += 1
        if n == 0:
            break
        if pos + n > len(buf):
            raise ValueError("label runs past the packet")
        labels.append(str(bytes(buf[pos : pos + n]), "utf-8"))
        pos += n
    return ".".join(labels).lower(), (after if after >= 0 else pos)


def _txt(buf, pos, end):
    """TXT strings as a dict of lower-case key -> value (RFC 6763 §6.3: a key without '=' is a flag)."""
    out = {}
    while pos < end:
        n = buf[pos]
        pos += 1
        if pos + n > end:
            raise ValueError("TXT string runs past its record")
        item = str(bytes(buf[pos : pos + n]), "utf-8")
        pos += n
        key, eq, value = item.partition("=")
        if key and key.lower() not in out:  # the first occurrence of a key wins (§6.4)
            out[key.lower()] = value if eq else True
    return out


def parse(buf):
    """The records of an mDNS response: a list of (name, type, data). Raises ValueError if malformed.

    data is a name (PTR), (port, target) (SRV), a dict (TXT), a dotted IPv4 string (A), None otherwise.
    """
    if len(buf) < 12:
        raise ValueError("shorter than a DNS header")
    _, flags, qd, an, ns, ar = struct.unpack_from(">HHHHHH", buf, 0)
    if not flags & _FLAG_RESPONSE:
        raise ValueError("not a response")
    pos = 12
    for _ in range(qd):  # a legacy-unicast answer repeats our question (RFC 6762 §6.7)
        pos = _name(buf, pos)[1] + 4
    records = []
    for _ in range(an + ns + ar):
        name, pos = _name(buf, pos)
        if pos + 10 > len(buf):
            raise ValueError("record header runs past the packet")
        rtype, _, _, size = struct.unpack_from(">HHIH", buf, pos)
        pos += 10
        end = pos + size
        if end > len(buf):
            raise ValueError("record data runs past the packet")
        data = None
        if rtype == TYPE_PTR:
            data = _name(buf, pos)[0]
        elif rtype == TYPE_SRV:
            if size < 7:
                raise ValueError("short SRV record")
            data = (struct.unpack_from(">H", buf, pos + 4)[0], _name(buf, pos + 6)[0])
        elif rtype == TYPE_TXT:
            data = _txt(buf, pos, end)
        elif rtype == TYPE_A and size == 4:
            data = "%d.%d.%d.%d" % (buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3])
        records.append((name, rtype, data))
        pos = end
    return records


def pick(records, service=SERVICE, sender=None):
    """(ip, port) of the first instance of `service` whose TXT says rt=core.rd, or None.

    Without an A record for the SRV target, the sender of the answer is taken: it is the one advertising.
    """
    service = service.lower()
    by_name = {}
    for name, rtype, data in records:
        by_name.setdefault((name, rtype), data)
    for name, rtype, data in records:
        if rtype != TYPE_PTR or name != service:
            continue
        txt = by_name.get((data, TYPE_TXT))
        srv = by_name.get((data, TYPE_SRV))
        if not txt or txt.get("rt") != "core.rd" or srv is None:
            continue
        ip = by_name.get((srv[1], TYPE_A)) or sender
        if ip:
            return ip, srv[0]
    return None


async def find(bind_ip="0.0.0.0", timeout_ms=1000, service=SERVICE):
    """Ask once and wait up to timeout_ms for an answer naming the master; (ip, port) or None."""
    sock = None
    try:
        sock = udp_socket(bind_ip, 0)  # on an ESP32 bound to 0.0.0.0: the address of boot may be gone
        qid = ticks_ms() & 0xFFFF
        sock.sendto(query(service, qid), sockaddr(GROUP, PORT))
        deadline = ticks_add(ticks_ms(), timeout_ms)
        while True:
            left = ticks_diff(deadline, ticks_ms())
            if left <= 0:
                return None
            try:
                data, addr = await wait_for_ms(recvfrom(sock, _MAX_PACKET), left)
            except asyncio.TimeoutError:
                return None
            try:
                found = pick(parse(data), service, peer_of(addr)[0])
            except (ValueError, IndexError):
                continue  # malformed: dropped, keep listening
            if found is not None:
                return found
    except OSError as exc:
        print("mdns: query failed:", exc)
        return None
    finally:
        if sock is not None:
            sock.close()
