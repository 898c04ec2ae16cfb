"""Runs one capability module in MicroPython with the virtual ESP32's shims, without the agent.

Layer: test helper (MicroPython). Used for what the agent's wiring would hide or make slow: run(emit) with
exact event timing, selftest(), setup refusals. argv: module name, its cfg as JSON, steps as JSON:
    ["call", COMMAND, {params}]   await obj.COMMAND(**params), print {"result": …} or {"error": …}
    ["run", MS]                   start obj.run(emit) in the background for MS ms; events print as
                                  {"event": {…}, "t": wall-clock ns}
    ["sleep", MS]                 let the event loop run
    ["selftest"]                  print {"selftest": "ok"} or {"error": …}
    ["stop"]                      module.stop(obj)
    ["skip", MS]                  move the board's 30-bit tick counter on by MS ms (PIFLEET_SIM_TICKS set)
Everything printed is one JSON object per line; a setup that raises prints {"setup_error": …} and ends.
"""

import asyncio
import json
import sys
import time

import _simticks

_simticks.install()  # with PIFLEET_SIM_TICKS: the ESP32's ticks, before the module imports agent.port's


def say(obj):
    print(json.dumps(obj))


def describe(exc):
    return "%s: %s" % (type(exc).__name__, exc)


async def main(name, cfg, steps):
    module = __import__(name)
    try:
        obj = module.setup(cfg)
    except Exception as exc:  # noqa: BLE001 — the test reads what setup refused
        say({"setup_error": describe(exc)})
        return
    say({"ready": time.time_ns()})
    tasks = []
    for step in steps:
        kind = step[0]
        if kind == "call":
            try:
                say({"result": await getattr(obj, step[1])(**step[2])})
            except Exception as exc:  # noqa: BLE001
                say({"error": describe(exc)})
        elif kind == "run":

            def emit(values):
                say({"event": values, "t": time.time_ns()})

            async def bounded(ms):
                try:
                    await asyncio.wait_for_ms(obj.run(emit), ms)
                except asyncio.TimeoutError:
                    pass

            tasks.append(asyncio.create_task(bounded(step[1])))
        elif kind == "sleep":
            await asyncio.sleep_ms(step[1])
        elif kind == "selftest":
            try:
                module.selftest(obj)
                say({"selftest": "ok"})
            except Exception as exc:  # noqa: BLE001
                say({"error": describe(exc)})
        elif kind == "stop":
            module.stop(obj)
        elif kind == "skip":
            _simticks.skip(step[1])
    for task in tasks:
        await task


asyncio.run(main(sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])))
