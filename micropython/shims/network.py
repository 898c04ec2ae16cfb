"""`network` for the virtual ESP32: a WLAN station that "joins" at once and has the board's loopback address.

Layer: unix-port shim. The address comes from $PIFLEET_SIM_IP (default 127.0.0.1). Never copied to a board.
"""

import os

STA_IF = 0
AP_IF = 1
STAT_IDLE = 0
STAT_CONNECTING = 1
STAT_GOT_IP = 1010


class WLAN:
    def __init__(self, interface=STA_IF):
        self._interface = interface
        self._active = False
        self._ssid = None

    def active(self, flag=None):
        if flag is None:
            return self._active
        self._active = bool(flag)
        if not self._active:
            self._ssid = None
        return None

    def connect(self, ssid=None, key=None, *, bssid=None):
        if not self._active:
            raise OSError("WLAN not active")
        self._ssid = ssid

    def disconnect(self):
        self._ssid = None

    def isconnected(self):
        return self._active and self._ssid is not None

    def status(self, param=None):
        return STAT_GOT_IP if self.isconnected() else STAT_IDLE

    def ifconfig(self, config=None):
        ip = os.getenv("PIFLEET_SIM_IP") or "127.0.0.1"
        return (ip, "255.0.0.0", "127.0.0.1", "127.0.0.1")

    def config(self, name=None, **kwargs):
        if name == "mac":
            ip = os.getenv("PIFLEET_SIM_IP") or "127.0.0.1"
            return bytes([0x24, 0x0A] + [int(part) for part in ip.split(".")])
        if name == "ssid":
            return self._ssid
        return None
