"""MicroPython itself over the air: the app image into the inactive OTA slot, the switch, and the verdict after it.

Layer: device side, application; loaded only during an update (agent/admin.py routes /ota here for the request,
agent/setup.py loads it at a boot that follows an update) and forgotten after it: a board that is not being
updated pays nothing for it.

- `PUT /ota?sha=HEX` with RFC 7959 Block1 blocks (512 bytes under OSCORE), Size1 on the first: each block goes
  straight into the next OTA slot (esp32.Partition.RUNNING's get_next_update()) with writeblocks, its 4 KiB sector
  erased when the block starts one, and into a running SHA-256, so the board never holds more than one block.
  The last block is answered only after the hash matched; then `ota.try` (what is expected after the reset) is
  written, set_boot() switches otadata to the new slot, and the board resets. A wrong hash changes nothing: the
  running image stays the boot image.
- After the reset the new image is pending verification: `trial()` waits until the agent has registered with
  the master and the role's modules passed their self-check (none failed), then calls
  esp32.Partition.mark_app_valid_cancel_rollback(). Otherwise it notes why in `ota.try` and resets, and the
  bootloader, finding the image still pending, marks it aborted and starts the previous one (ESP-IDF's app
  rollback); an image whose agent cannot even start resets through main.py and rolls back the same way.
- `GET /ota`: the running slot and its MicroPython version (the app descriptor of the running partition), and
  the last update's outcome: `trial` (pending), `valid`, or `rolled_back` with the reason.
"""

import json
import os
from hashlib import sha256

from agent import coap
from agent.port import const

_BAD_OPTION = const(130)
_BAD_REQUEST = const(128)
_BLOCK1 = const(27)
_CHANGED = const(68)
_CONTENT = const(69)
_CONTENT_FORMAT = const(12)
_CONTINUE = const(95)
_GET = const(1)
_JSON = const(50)
_METHOD_NOT_ALLOWED = const(133)
_PUT = const(3)
_REQUEST_ENTITY_INCOMPLETE = const(136)
_REQUEST_ENTITY_TOO_LARGE = const(141)
_SIZE1 = const(60)
_URI_QUERY = const(15)
_SECTOR = const(4096)
_CONFIRM_S = const(60)  # registered and self-checked within this long after the switch, or back to the old image

TRY, VALID, ROLLED_BACK = "ota.try", "ota.ok", "ota.rb"


def _answer(code, body=None, options=()):
    if body is None:
        return code, list(options), b""
    return code, [(_CONTENT_FORMAT, coap.uint(_JSON))] + list(options), json.dumps(body).encode()


def _error(code, error, field, options=()):
    return _answer(code, {"ok": False, "error": error, "field": field}, options)


def app_version(part):
    """The version in the partition's esp_app_desc_t (after the image and first segment headers), or None."""
    buf = bytearray(80)
    part.readblocks(0, buf, 0x20)
    if buf[:4] != b"\x32\x54\xcd\xab":
        return None
    return bytes(buf[16:48]).split(b"\0")[0].decode()


def _read(name):
    try:
        with open(name) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write(name, obj):
    with open(name, "w") as f:
        json.dump(obj, f)


def _remove(*names):
    for name in names:
        try:
            os.remove(name)
        except OSError:
            pass


def status():
    """What GET /ota says: the running image, and the last update's outcome."""
    import esp32

    run = esp32.Partition(esp32.Partition.RUNNING)
    out = {"running": run.info()[4], "version": app_version(run), "state": "idle", "rolled_back": False}
    for name, state in ((TRY, "trial"), (VALID, "valid"), (ROLLED_BACK, "rolled_back")):
        mark = _read(name)
        if mark is not None:
            out.update(mark)
            out["state"] = state
            out["rolled_back"] = state == "rolled_back"
    return out


class Update:
    """The one image transfer in progress."""

    def block(self, res, msg, segments):
        """A request for /ota while this update runs (agent/resources.py routes it here, admin not loaded)."""
        try:
            return handle(res, msg, segments)
        finally:
            if res.ota is None:
                from agent.port import forget

                forget("ota")

    def __init__(self):
        self.part = None
        self.size = 0

    def put(self, query, msg):
        sha = None
        for item in query:
            if item.startswith("sha="):
                sha = item[4:]
        if sha is None or len(sha) != 64:
            return _error(_BAD_REQUEST, "sha=HEX (the SHA-256 of the app image) is required", "sha")
        raw = msg.option(_BLOCK1)
        if raw is None:
            num, more, szx = 0, False, 6
        else:
            try:
                num, more, szx = coap.read_block(raw)
            except coap.DecodeError:
                return _answer(_BAD_OPTION)
            if more and len(msg.payload) != 16 << szx:
                return _error(_BAD_REQUEST, "a block that is not the last must be full", "block1")
        if num == 0:
            import esp32

            try:
                self.part = esp32.Partition(esp32.Partition.RUNNING).get_next_update()
            except OSError:
                return _error(_BAD_REQUEST, "this board's partition table has no OTA slots: flash it with --ota", "ota")
            size = coap.read_uint(msg.option(_SIZE1)) if msg.option(_SIZE1) is not None else 0
            room = self.part.info()[3]
            if size > room:
                self.part = None
                return _error(
                    _REQUEST_ENTITY_TOO_LARGE,
                    "%d bytes do not fit the %d of slot %s" % (size, room, "ota"),
                    "size",
                    [(_SIZE1, coap.uint(room))],
                )
            _remove(TRY, VALID, ROLLED_BACK)
            self.sha, self.hash, self.size = sha, sha256(), 0
        elif self.part is None or sha != self.sha or num * (16 << szx) != self.size:
            return _error(_REQUEST_ENTITY_INCOMPLETE, "block %d does not continue an update" % num, "block1")
        payload = msg.payload
        at = self.size
        if at + len(payload) > self.part.info()[3]:
            self.part = None
            return _error(_REQUEST_ENTITY_TOO_LARGE, "the image does not fit its slot", "size")
        if at % _SECTOR == 0:
            self.part.ioctl(6, at // _SECTOR)  # erase the sector this block starts
        elif at // _SECTOR != (at + len(payload) - 1) // _SECTOR:
            self.part.ioctl(6, at // _SECTOR + 1)
        self.part.writeblocks(at // _SECTOR, payload, at % _SECTOR)
        self.hash.update(payload)
        self.size += len(payload)
        block = [(_BLOCK1, coap.block_value(num, more, szx))] if raw is not None else []
        if more:
            return _CONTINUE, block, b""
        part, self.part = self.part, None
        digest = "".join("%02x" % b for b in self.hash.digest())
        if digest != self.sha:
            return _error(_BAD_REQUEST, "sha256 is %s, not the %s announced" % (digest, self.sha), "sha", block)
        import esp32

        version = app_version(part)
        run = esp32.Partition(esp32.Partition.RUNNING)
        _write(TRY, {"to": part.info()[4], "target": version, "from": run.info()[4], "previous": app_version(run)})
        try:
            part.set_boot()
        except OSError as exc:
            _remove(TRY)
            return _error(_BAD_REQUEST, "the image does not verify: %r" % exc, "image", block)
        return _answer(_CHANGED, {"ok": True, "slot": part.info()[4], "version": version, "size": self.size}, block)


async def reset_soon():
    """The answer goes out first, then the board starts the new image."""
    from agent.port import sleep_ms

    await sleep_ms(300)
    print("ota: restarting into the new image")
    import machine

    machine.reset()


def trial(agent):
    """At a boot with `ota.try`: the new image confirms itself once the agent registered and its role is whole;
    if the bootloader has already gone back (the running slot is not the one switched to), say so."""
    import asyncio

    import esp32

    mark = _read(TRY) or {}
    running = esp32.Partition(esp32.Partition.RUNNING).info()[4]
    if running != mark.get("to"):
        mark["reason"] = mark.get("reason") or (
            "MicroPython %s in %s did not confirm itself (its agent did not start, or the power failed first): "
            "the bootloader went back to %s" % (mark.get("target"), mark.get("to"), running)
        )
        _write(ROLLED_BACK, mark)
        _remove(TRY)
        print("ota: rolled back:", mark["reason"])
        return
    asyncio.create_task(_confirm(agent, mark))


async def _confirm(agent, mark):
    from agent.port import sleep_ms

    waited = 0
    while waited < _CONFIRM_S * 1000:
        failed = agent.resources.failed_caps
        if failed:
            mark["reason"] = "the role's self-check failed on %s: %s" % (mark.get("target"), failed)
            break
        if agent.registration.location is not None:
            import esp32

            esp32.Partition.mark_app_valid_cancel_rollback()
            _write(VALID, mark)
            _remove(TRY)
            print("ota: MicroPython %s confirmed" % mark.get("target"))
            return
        await sleep_ms(250)
        waited += 250
    else:
        mark["reason"] = "MicroPython %s did not register with the master within %d s" % (
            mark.get("target"),
            _CONFIRM_S,
        )
    _write(TRY, mark)
    print("ota:", mark["reason"], "- back to the previous image")
    import machine

    machine.reset()


def handle(res, msg, segments):
    """GET /ota, PUT /ota?sha=…, /ota/set (agent/sets.py) (agent/admin.py routes here)."""
    if len(segments) != 1:
        if segments[1:] == ["set"]:  # the agent and role modules for another .mpy version (agent/sets.py)
            from agent import sets
            from agent.port import forget

            try:
                return sets.handle(res, msg)
            finally:
                forget("sets")
        return _answer(const(132))
    if msg.code == _GET:
        return _answer(_CONTENT, status())
    if msg.code != _PUT:
        return _answer(_METHOD_NOT_ALLOWED)
    update = getattr(res, "ota", None)
    if update is None:
        update = res.ota = Update()
    answer = update.put([v.decode() for v in msg.option_values(_URI_QUERY)], msg)
    if update.part is None:
        res.ota = None
        if answer[0] == _CHANGED:
            import asyncio

            asyncio.create_task(reset_soon())
    return answer
