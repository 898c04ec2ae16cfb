"""`network` for the agent under CPython on a Linux host (a process target).

Layer: process-runtime edge, the host's counterpart of the ESP32's built-in `network` module. The agent's
app.py asks `network.WLAN(STA_IF)` for its address on every runtime; on a Linux host the network is the
host's own and already joined, so the station is always connected and its address is the one the process
serves on ($PIFLEET_PROCESS_IP, set by `pifleet process start`). No pins, no simulated chip: this is not
the virtual ESP32's shim (micropython/shims/network.py) and never needs it. Never copied to a board.
"""

import os
import uuid

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010


def _ip():
    return os.environ.get("PIFLEET_PROCESS_IP") or "127.0.0.1"


def _mac():
    """This process's own MAC for adoption: from the host's and the process name ($PIFLEET_PROCESS_NAME), with
    the locally-administered bit set and the multicast bit clear, so two processes on one host differ."""
    import hashlib

    seed = uuid.getnode().to_bytes(6, "big") + os.environ.get("PIFLEET_PROCESS_NAME", "").encode()
    mac = bytearray(hashlib.sha256(seed).digest()[:6])
    mac[0] = (mac[0] | 0x02) & 0xFE
    return bytes(mac)


class WLAN:
    def __init__(self, interface=STA_IF):
        self._interface = interface

    def active(self, flag=None):
        return True if flag is None else None

    def connect(self, ssid=None, key=None, *, bssid=None):
        """Nothing to join: the host is on its network already."""

    def disconnect(self):
        """A process never leaves the host's network."""

    def isconnected(self):
        return True

    def status(self, param=None):
        return STAT_GOT_IP

    def ifconfig(self, config=None):
        return (_ip(), "255.255.255.255", "0.0.0.0", "0.0.0.0")

    def config(self, name=None, **kwargs):
        if name == "mac":
            return _mac()
        return None
