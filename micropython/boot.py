# boot.py runs first on every start. Its only job: drive every output of the board's role low, before
# anything else can go wrong. By convention a capability config key ending in "_pin" names an output.
# Kept tiny and free of agent imports, so a broken agent or role module cannot keep a motor running.
try:
    import json
    from machine import Pin

    with open("config.json") as f:
        for cfg in json.load(f).get("caps", {}).values():
            for key in cfg:
                if key.endswith("_pin"):
                    Pin(cfg[key], Pin.OUT, value=0)
except Exception as e:  # noqa: BLE001 — boot must go on; the agent reports problems later
    print("boot:", repr(e))
