"""Role modules on the board's flash: receiving one block-wise, checking it, and keeping the files tidy.

Layer: device side, application. A module arrives as `PUT /m/STEM?sha=HEX` with RFC 7959 Block1 blocks. Each
block is appended to caps/STEM.new at once and fed to a running SHA-256, so the board never holds more than
one block of it in RAM. The first block may carry Size1 (RFC 7959 §4): what does not fit the free space
(minus a reserve for the config and the filesystem's own needs) is refused with 4.13 before anything is
written. When the last block arrives, the hash is compared. A mismatch deletes the file (4.00). A match renames
it to caps/STEM.mpy. The rename is atomic on littlefs, so a power loss leaves the .new file or the whole
module, never half of one.

The STEM is NAME_HASHPREFIX (the master's naming): a new version never overwrites the one that runs, which
keeps rollback and power-loss safety trivial. This module must not load or run modules (agent/role.py does).
It is imported on the first /m request only: a board that never gets a module pays nothing for it (and it does
not import agent/caps.py).
"""

import os
from hashlib import sha256

from agent import coap
from agent.port import const, forget

# caps/ and its naming rule, as agent/caps.py has them: not imported from there, because caps.py would take about
# 2.5 KB of heap during every upload for a constant and one line
CAPS_DIR = "caps"


def valid_stem(stem):
    return 0 < len(stem) <= 40 and all(c.isdigit() or c == "_" or "a" <= c <= "z" for c in stem)


# CoAP numbers (RFC 7252, 7959), inlined: agent/coap.py keeps only what the tests use by name
_BAD_OPTION = const(130)
_BAD_REQUEST = const(128)
_BLOCK1 = const(27)
_CHANGED = const(68)
_CONTENT_FORMAT = const(12)
_CONTINUE = const(95)
_JSON = const(50)
_PUT = const(3)
_REQUEST_ENTITY_INCOMPLETE = const(136)
_REQUEST_ENTITY_TOO_LARGE = const(141)
_SIZE1 = const(60)
_URI_QUERY = const(15)

_RESERVE = const(16384)  # left free for config.json rewrites and littlefs's copy-on-write blocks
_MAX_SZX = const(6)  # 1024-byte blocks at most: one block plus headers fits the 1280-byte datagram


def _hex(digest):
    return "".join("%02x" % b for b in digest)


def free_bytes():
    st = os.statvfs(".")
    return st[0] * st[4]  # f_bsize * f_bavail


def listing():
    """{stem: size} of the modules on flash (finished ones only)."""
    out = {}
    for name in os.listdir(CAPS_DIR):
        if name.endswith(".mpy") or (name.endswith(".py") and name != "__init__.py"):
            out[name.rsplit(".", 1)[0]] = os.stat(CAPS_DIR + "/" + name)[6]
    return out


def _answer(code, error=None, field=None, options=()):
    if error is None:
        return code, list(options), b""
    body = '{"ok": false, "error": "%s", "field": "%s"}' % (error.replace('"', "'"), field or "")
    return code, [(_CONTENT_FORMAT, coap.uint(_JSON))] + list(options), body.encode()


class Upload:
    """The one module upload in progress (a board takes modules one at a time)."""

    def __init__(self):
        self.stem = None

    def _reset(self):
        if self.stem is not None:
            try:
                os.remove("%s/%s.new" % (CAPS_DIR, self.stem))
            except OSError:
                pass
        self.stem = None

    def block(self, res, msg, segments):
        """A request for /m/… while this upload runs (agent/resources.py routes it here, admin not loaded): the
        next PUT block, or admin's answer for anything else; the module is forgotten when the upload ends."""
        try:
            if len(segments) == 2 and msg.code == _PUT:
                return self.put(segments[1], [v.decode() for v in msg.option_values(_URI_QUERY)], msg)
            from agent import admin

            try:
                return admin.handle(res, msg, msg.path(), segments)
            finally:
                forget("admin")
        finally:
            if self.stem is None:
                res.upload = None
                forget("modules")

    def put(self, stem, query, msg):
        """Handle one PUT /m/STEM request (one block); return (code, options, payload)."""
        if not valid_stem(stem):
            return _answer(_BAD_REQUEST, "a module name is lower-case letters, digits and _", "stem")
        sha = None
        for item in query:
            if item.startswith("sha="):
                sha = item[4:]
        if sha is None or len(sha) != 64:
            return _answer(_BAD_REQUEST, "sha=HEX (the SHA-256 of the module) is required", "sha")
        raw = msg.option(_BLOCK1)
        if raw is None:
            num, more, szx = 0, False, _MAX_SZX
        else:
            try:
                num, more, szx = coap.read_block(raw)
            except coap.DecodeError:
                return _answer(_BAD_OPTION)
            if szx > _MAX_SZX:
                return _answer(_BAD_REQUEST, "blocks of at most 1024 bytes", "block1")
            if more and len(msg.payload) != 16 << szx:
                return _answer(_BAD_REQUEST, "a block that is not the last must be full", "block1")
        if num == 0:
            self._reset()
            size = coap.read_uint(msg.option(_SIZE1)) if msg.option(_SIZE1) is not None else 0
            room = free_bytes() - _RESERVE
            if size > room:
                return _answer(
                    _REQUEST_ENTITY_TOO_LARGE,
                    "%d bytes do not fit: %d free" % (size, room),
                    "size",
                    [(_SIZE1, coap.uint(max(room, 0)))],
                )
            self.stem, self.sha, self.hash, self.size = stem, sha, sha256(), 0
        elif stem != self.stem or num * (16 << szx) != self.size:
            return _answer(_REQUEST_ENTITY_INCOMPLETE, "block %d does not continue an upload" % num, "block1")
        try:
            with open("%s/%s.new" % (CAPS_DIR, stem), "ab" if num else "wb") as f:
                f.write(msg.payload)
        except OSError:
            self._reset()  # the filesystem is full: nothing of the new module stays behind
            return _answer(_REQUEST_ENTITY_TOO_LARGE, "the board's filesystem is full", "size")
        self.hash.update(msg.payload)
        self.size += len(msg.payload)
        block = [(_BLOCK1, coap.block_value(num, more, szx))] if raw is not None else []
        if more:
            return _CONTINUE, block, b""
        digest = _hex(self.hash.digest())
        if digest != self.sha:
            self._reset()
            return _answer(_BAD_REQUEST, "sha256 is %s, not the %s announced" % (digest, sha), "sha", block)
        os.rename("%s/%s.new" % (CAPS_DIR, stem), "%s/%s.mpy" % (CAPS_DIR, stem))
        self.stem = None
        body = '{"ok": true, "stem": "%s", "size": %d}' % (stem, self.size)
        return _CHANGED, block + [(_CONTENT_FORMAT, coap.uint(_JSON))], body.encode()
