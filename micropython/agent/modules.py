"""Role modules on the board's flash: receiving one block-wise, checking it, and keeping the files tidy.

Layer: device side, application. A module arrives as `PUT /m/STEM?sha=HEX` with RFC 7959 Block1 blocks. Each
block is written to caps/STEM.new (open from the first block to the last) as it arrives and fed to a running
SHA-256, so the board never holds more than one block of it in RAM. The first block may carry Size1 (RFC 7959
§4): what does not fit the free space (minus a reserve for the config and the filesystem's own needs) is refused
with 4.13 before anything is written. When the last block arrives, the hash is compared. A mismatch deletes the
file (4.00). A match renames it to caps/STEM.mpy. The rename is atomic on littlefs, so a power loss leaves the
.new file or the whole module, never half of one.

The STEM is NAME_HASHPREFIX (the master's naming): a new version never overwrites the one that runs, which
keeps rollback and power-loss safety trivial. This module must not load or run modules (agent/role.py does).
It is imported for the first block of a push (agent/resources.py sends every PUT /m… here, admin not loaded)
and for GET /m, and forgotten when no upload is in progress: a board that never gets a module pays nothing for it
(and it does not import agent/caps.py).
"""

from hashlib import sha256

from agent import coap
from agent.port import const, forget, os, pause

# caps/ and its naming rule, as agent/caps.py has them: not imported from there, because caps.py would take about
# 2.5 KB of heap during every upload for a constant and one line
CAPS_DIR = "caps"

# Names: this module is loaded during a push, when the interned-string pool is full (docs/agent.md, "Heap"): one
# name the board does not have yet (an identifier, an attribute, a string literal of up to 10 characters) would
# grow the pool by about 4.5 KB at the first block. So it uses only names the board has, and its paths and
# field names come from literals longer than that (not interned) or from slices of them.


def valid_stem(stem):
    # a-z, 0-9 and _, looked at as bytes: each character of a str iterated over is interned (docs/agent.md, "Heap")
    return 0 < len(stem) <= 40 and all(48 <= b <= 57 or b == 95 or 97 <= b <= 122 for b in stem.encode())


# CoAP numbers (RFC 7252, 7959), inlined: agent/coap.py keeps only what the tests use by name
_BAD_OPTION = const(130)
_BAD_REQUEST = const(128)
_BLOCK1 = const(27)
_CHANGED = const(68)
_CONTENT_FORMAT = const(12)
_CONTINUE = const(95)
_JSON = const(50)
_METHOD_NOT_ALLOWED = const(133)
_NOT_FOUND = const(132)
_REQUEST_ENTITY_INCOMPLETE = const(136)
_REQUEST_ENTITY_TOO_LARGE = const(141)
_SIZE1 = const(60)
_URI_QUERY = const(15)

_RESERVE = const(16384)  # left free for config.json rewrites and littlefs's copy-on-write blocks
_MAX_SZX = const(6)  # 1024-byte blocks at most: one block plus headers fits the 1280-byte datagram
_DATAGRAM = const(1280)  # agent/endpoint.py's _MAX_DATAGRAM: what recvfrom takes for each


def free_bytes():
    st = os.statvfs(".")
    return st[0] * st[4]  # f_bsize * f_bavail


def listing():
    """{stem: size} of the modules on flash (finished ones only)."""
    out = {}
    for name in os.listdir(CAPS_DIR):
        stem, _, suffix = name.rpartition(".")
        # .mpy or .py: "py" as a literal of its own would be an interned name the board does not have (above)
        if len(suffix) > 1 and "mpy".endswith(suffix) and name != "__init__.py":
            out[stem] = os.stat(CAPS_DIR + "/" + name)[6]
    return out


def _answer(code, error=None, field=None, options=()):
    if error is None:
        return code, list(options), b""
    body = '{"ok": false, "error": "%s", "field": "%s"}' % (error.replace('"', "'"), field or "")
    return code, [(_CONTENT_FORMAT, coap.uint(_JSON))] + list(options), body.encode()


# res.upload, the one upload in progress (a board takes modules one at a time): a list, not an object of a class
# of this module (a class name would be one more interned name); its file stays open from the first block to
# the last, and each block goes to it as it arrives
_STEM = const(0)
_HASH = const(1)  # the running SHA-256 of what arrived
_SIZE = const(2)
_WANT = const(3)  # the SHA-256 announced (hex)
_FILE = const(4)


def close(res):
    """Give up the upload in progress, if any: its unfinished file is deleted."""
    upload = getattr(res, "upload", None)
    res.upload = None
    if upload is None:
        return
    upload[_FILE].close()
    try:
        os.remove("caps/%s.new" % upload[_STEM])
    except OSError:
        pass


async def handle(res, msg, segments):
    """PUT /m/STEM: one block of a module upload (agent/resources.py routes every PUT /m… here, loading this
    module for the first block; it is forgotten when no upload is in progress)."""
    # the datagram and its decoded and decrypted copies are garbage now: collected before this block is written
    # and answered, so the step never holds both (a board collects here; docs/agent.md, "Heap")
    await pause()
    try:
        if len(segments) != 2:
            return (_METHOD_NOT_ALLOWED if len(segments) == 1 else _NOT_FOUND), [], b""
        return write(res, segments[1], [v.decode() for v in msg.option_values(_URI_QUERY)], msg)
    finally:
        if getattr(res, "upload", None) is None:
            forget("modules")


def write(res, stem, query, msg):
    """One PUT /m/STEM request: its block written to caps/STEM.new; (code, options, payload)."""
    if not valid_stem(stem):
        return _answer(_BAD_REQUEST, "a module name is lower-case letters, digits and _", "stem")
    need = "sha=HEX (the SHA-256 of the module) is required"  # its first 4 and 3 characters: see above
    digest = None
    for item in query:
        if item.startswith(need[:4]):
            digest = item[4:]
    if digest is None or len(digest) != 64:
        return _answer(_BAD_REQUEST, need, need[:3])
    raw = msg.option(_BLOCK1)
    sizes = "block1: blocks of at most 1024 bytes"
    if raw is None:
        num, more, szx = 0, False, _MAX_SZX
    else:
        try:
            num, more, szx = coap.read_block(raw)
        except coap.DecodeError:
            return _answer(_BAD_OPTION)
        if szx > _MAX_SZX:
            return _answer(_BAD_REQUEST, sizes[8:], sizes[:6])
        if more and len(msg.payload) != 16 << szx:
            return _answer(_BAD_REQUEST, "a block that is not the last must be full", sizes[:6])
    upload = getattr(res, "upload", None)
    if num == 0:
        close(res)
        size = coap.read_uint(msg.option(_SIZE1)) if msg.option(_SIZE1) is not None else 0
        free = free_bytes() - _RESERVE
        if size > free:
            return _answer(
                _REQUEST_ENTITY_TOO_LARGE,
                "%d bytes do not fit: %d free" % (size, free),
                "size",
                [(_SIZE1, coap.uint(max(free, 0)))],
            )
        # the upload holds this module, its file and its hash until the last block: the next block's datagram
        # must still fit beside them (agent/port.py's recvfrom: 1,280 contiguous bytes, and on the unix port the
        # datagram's copy; tried before they are made, so the push's peak is not theirs and the try's together).
        # Where it would not, the board spun on recvfrom's MemoryError for good while the upload waited for that
        # very datagram, its watchdog fed (module_push.py --rollout 20, after in-place
        # switches: 34 KB free in holes of at most 608 bytes). It restarts unanswered instead (the .new file goes
        # at boot): the master's retransmission of this block finds a fresh heap. handle() collected just before.
        try:
            _ = bytearray(_DATAGRAM), bytearray(_DATAGRAM // 2)
        except MemoryError:
            print("modules: no room: restarting")
            __import__("machine").reset()
        _ = None
        try:
            upload = [stem, sha256(), 0, digest, open("caps/%s.new" % stem, "wb")]
        except OSError:
            return _answer(_REQUEST_ENTITY_TOO_LARGE, "the board's filesystem is full", "size")
        res.upload = upload
    elif upload is None or stem != upload[_STEM] or num * (16 << szx) != upload[_SIZE]:
        return _answer(_REQUEST_ENTITY_INCOMPLETE, "block %d does not continue an upload" % num, sizes[:6])
    try:
        upload[_FILE].write(msg.payload)
    except OSError:
        close(res)  # the filesystem is full: nothing of the new module stays behind
        return _answer(_REQUEST_ENTITY_TOO_LARGE, "the board's filesystem is full", "size")
    upload[_HASH].update(msg.payload)
    upload[_SIZE] += len(msg.payload)
    block = [(_BLOCK1, coap.block_value(num, more, szx))] if raw is not None else []
    if more:
        return _CONTINUE, block, b""
    digest = upload[_HASH].digest().hex()
    if digest != upload[_WANT]:
        close(res)
        return _answer(_BAD_REQUEST, "sha256 is %s, not the %s announced" % (digest, upload[_WANT]), need[:3], block)
    res.upload = None
    upload[_FILE].close()
    os.rename("caps/%s.new" % stem, "caps/%s.mpy" % stem)
    body = '{"ok": true, "stem": "%s", "size": %d}' % (stem, upload[_SIZE])
    return _CHANGED, block + [(_CONTENT_FORMAT, coap.uint(_JSON))], body.encode()
