"""Process targets: the board agent, unchanged, running under CPython on a Linux host (the Pi or another
machine). It registers with the master like a board (`et=pifleet.process`) and offers host capabilities
(`db`: parameterised SQL; `python`: functions of allow-listed modules).

Layer: a target runner, like `pifleet.sim` (which it builds on). It must not import litestar or aiocoap: a
process target talks to the master only over CoAP, like a board.
"""

from pifleet.process.target import PROCESS_CAPS, ProcessTarget, master_database_url

__all__ = ["PROCESS_CAPS", "ProcessTarget", "master_database_url"]
