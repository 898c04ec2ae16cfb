"""heap32's driver for the 64-bit unix port: the same requests as heap32.mjs, one JSON line each on stdin.

Run as `micropython -X heapsize=… unix_driver.py`. Answers are lines starting with \x01; anything else is what
the agent printed. Automatic collection is off (gc.disable()), so, as in the wasm32 build, garbage goes only
when someone asks for a collection.
"""

import asyncio
import gc
import json
import sys
import time

g = {"__name__": "__main__"}


def say(obj):
    sys.stdout.write("\x01" + json.dumps(obj) + "\n")


async def _until(count, ms):
    import h32  # imported by the harness's own request first: its cost is measured like the wasm build's

    start = time.ticks_ms()
    while len(h32.outbox) < count and time.ticks_diff(time.ticks_ms(), start) < ms:
        await asyncio.sleep_ms(1)
    return len(h32.outbox)


def serve():
    gc.disable()
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        req = json.loads(line)
        try:
            if req["op"] == "put":
                import binascii
                import os

                path = req["path"]
                at = ""
                for part in path.split("/")[1:-1]:
                    at += "/" + part
                    try:
                        os.mkdir(at)
                    except OSError:
                        pass
                with open(path, "wb") as f:
                    f.write(binascii.a2b_base64(req["b64"]))
                say({"ok": True})
            elif req["op"] == "run":
                exec(req["code"], g)
                value = g.get("_r")
                say({"ok": True, "value": value if isinstance(value, (int, str)) else None})
            elif req["op"] == "step":
                say({"ok": True, "value": asyncio.run(_until(req["count"], req["ms"]))})
            else:
                say({"ok": False, "error": "unknown op"})
        except Exception as exc:  # noqa: BLE001 — reported to the driver
            say({"ok": False, "error": repr(exc)})


serve()
