"""pifleet board agent: the small runtime that runs on every board.

Layer: device side. The agent package is runtime-neutral: the same files run under MicroPython on an
ESP32, under the MicroPython unix port (the virtual ESP32) and under CPython (a process target).
Everything that differs between those runtimes lives in agent/port.py and nowhere else.
"""

VERSION = "0.2.0"
