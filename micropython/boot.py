# boot.py runs first on every start. Its only job: switch every output of the board's role off, before
# anything else can go wrong. By convention a capability config key ending in "_pin" names an output; off is
# low, or high for a capability configured "inverted" (an active-low relay board is on when its input is low).
# Kept tiny and free of agent imports, so a broken agent or role module cannot keep a motor running.
try:
    import json

    from machine import Pin

    with open("config.json") as f:
        for cfg in json.load(f).get("caps", {}).values():
            off = 1 if cfg.get("inverted") else 0
            for key in cfg:
                if key.endswith("_pin"):
                    try:  # each on its own: a pin the port refuses must not leave the others undriven
                        Pin(cfg[key], Pin.OUT, value=off)
                    except Exception as e:  # noqa: BLE001
                        print("boot:", key, repr(e))
except Exception as e:  # noqa: BLE001 — boot must go on; the agent reports problems later
    print("boot:", repr(e))
try:  # the agent and role modules for this MicroPython's .mpy version wait in mpy/: swap them in (mpyset_swap.py)
    __import__("os").stat("mpy/%d/agent" % (getattr(__import__("sys").implementation, "_mpy", 0) & 1023))
    __import__("mpyset_swap")
except OSError:
    pass  # none waits: the usual start
except Exception as e:  # noqa: BLE001
    print("boot:", repr(e))
