"""The virtual ESP32: runs the real board agent in the real MicroPython unix port, with observable pins.

Layer: sim (CPython, a product part of its own). It must not import litestar or aiocoap: it is a board,
and talks to the master only over UDP like a real one.
"""

from pifleet.sim.board import DEFAULT_HEAPSIZE, ROLES, VirtualBoard

__all__ = ["DEFAULT_HEAPSIZE", "ROLES", "VirtualBoard"]
