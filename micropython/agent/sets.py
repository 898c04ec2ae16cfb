"""The agent and role modules for another .mpy version, pushed before an update of MicroPython (docs/flashing.md,
"Different .mpy versions").

Layer: device side, application; loaded for the request only (agent/ota.py routes /ota/set here) and forgotten
after it. The root's agent/ and caps/ are the set the running MicroPython loads (agent/_mpy: its key,
sys.implementation._mpy & 1023); a set for another key waits in mpy/KEY/ until a MicroPython of that key starts and
mpyset_swap.py (run by boot.py) swaps it in, parking the old one in mpy/OLD/ for a rollback.

- `GET /ota/set`: {"mpy": the running key, "root": agent/_mpy's, "sets": [keys of the whole sets in mpy/, their
  record present]}.
- `DELETE /ota/set`: every set in mpy/ removed (the master starts a push so: the root's set and the one pushed
  are then all the board keeps).
- `PUT /ota/set?v=KEY&p=PATH&sha=HEX`, RFC 7959 Block1: one file of the set into mpy/KEY/PATH (agent/….mpy,
  agent/_mpy, caps/…), appended to PATH.new as the blocks come and renamed once its SHA-256 matched; `boot.py` and
  `mpyset_swap.py` go to the root the same way (what picks the set at a start, for a board flashed before it existed).
  KEY must not be the running MicroPython's: its set is the root's.
"""

import os
import sys
from hashlib import sha256

from agent import coap
from agent.ota import _answer, _error
from agent.port import const

_BAD_OPTION = const(130)
_BAD_REQUEST = const(128)
_BLOCK1 = const(27)
_CHANGED = const(68)
_CONTENT = const(69)
_CONTINUE = const(95)
_DELETE = const(4)
_DELETED = const(66)
_GET = const(1)
_METHOD_NOT_ALLOWED = const(133)
_PUT = const(3)
_REQUEST_ENTITY_INCOMPLETE = const(136)
_URI_QUERY = const(15)

ROOT = ("boot.py", "mpyset_swap.py")


def running():
    return sys.implementation._mpy & 1023


def _remove(path):
    """A file, or a directory and all in it."""
    try:
        names = [entry[0] for entry in os.ilistdir(path)]
    except OSError:
        try:
            os.remove(path)
        except OSError:
            pass
        return
    for name in names:
        _remove(path + "/" + name)
    os.rmdir(path)


def _makedirs(path):
    at = ""
    for part in path.split("/")[:-1]:
        at += part
        try:
            os.mkdir(at)
        except OSError:
            pass
        at += "/"


def status():
    try:
        with open("agent/_mpy") as f:
            root = int(f.read())
    except (OSError, ValueError):
        root = None
    waiting = []  # whole sets only: their record is pushed last
    try:
        for entry in os.ilistdir("mpy"):
            try:
                os.stat("mpy/%s/agent/_mpy" % entry[0])
                waiting.append(int(entry[0]))
            except (OSError, ValueError):
                pass
    except OSError:
        pass
    return {"mpy": running(), "root": root, "sets": sorted(waiting)}


def _target(query):
    """(path on the board, key, sha), or an error answer."""
    args = {}
    for item in query:
        name, _, value = item.partition("=")
        args[name] = value
    path, sha = args.get("p", ""), args.get("sha", "")
    if len(sha) != 64:
        return _error(_BAD_REQUEST, "sha=HEX (the SHA-256 of the file) is required", "sha")
    if path in ROOT:
        return path, None, sha
    try:
        key = int(args.get("v", ""))
    except ValueError:
        return _error(_BAD_REQUEST, "v=KEY (sys.implementation._mpy & 1023 of the set) is required", "v")
    if key == running():
        return _error(_BAD_REQUEST, "the set for .mpy %d is the root's: this MicroPython runs it" % key, "v")
    parts = path.split("/")
    if len(parts) != 2 or parts[0] not in ("agent", "caps") or not parts[1] or parts[1][0] == ".":
        return _error(_BAD_REQUEST, "p must be agent/NAME or caps/NAME, or boot.py or mpyset_swap.py", "p")
    return "mpy/%d/%s" % (key, path), key, sha


def _put(res, msg):
    target = _target([v.decode() for v in msg.option_values(_URI_QUERY)])
    if isinstance(target[0], int):
        return target  # an error answer
    path, key, sha = target
    raw = msg.option(_BLOCK1)
    if raw is None:
        num, more, szx = 0, False, 6
    else:
        try:
            num, more, szx = coap.read_block(raw)
        except coap.DecodeError:
            return _answer(_BAD_OPTION)
    state = getattr(res, "otaset", None)
    if num == 0:
        if key is not None:
            _makedirs(path)
        state = res.otaset = [path, sha, sha256(), 0]
    elif state is None or state[0] != path or state[1] != sha or num * (16 << szx) != state[3]:
        return _error(_REQUEST_ENTITY_INCOMPLETE, "block %d does not continue %s" % (num, path), "block1")
    with open(path + ".new", "ab" if num else "wb") as f:
        f.write(msg.payload)
    state[2].update(msg.payload)
    state[3] += len(msg.payload)
    block = [(_BLOCK1, coap.block_value(num, more, szx))] if raw is not None else []
    if more:
        return _CONTINUE, block, b""
    res.otaset = None
    digest = "".join("%02x" % b for b in state[2].digest())
    if digest != sha:
        _remove(path + ".new")
        return _error(_BAD_REQUEST, "sha256 of %s is %s, not %s" % (path, digest, sha), "sha", block)
    try:
        os.remove(path)
    except OSError:
        pass
    os.rename(path + ".new", path)
    return _answer(_CHANGED, {"ok": True, "path": path, "size": state[3]}, block)


def handle(res, msg):
    """GET, DELETE and PUT /ota/set (agent/ota.py routes here)."""
    if msg.code == _GET:
        return _answer(_CONTENT, status())
    if msg.code == _DELETE:
        _remove("mpy")
        return _answer(_DELETED, status())
    if msg.code == _PUT:
        return _put(res, msg)
    return _answer(_METHOD_NOT_ALLOWED)
