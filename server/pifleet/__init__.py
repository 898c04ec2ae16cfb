"""pifleet — the master of a home fleet of MicroPython boards and processes."""

__version__ = "0.1.0"
