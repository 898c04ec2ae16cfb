"""`network` for the virtual ESP32: a WLAN station with the board's loopback address that joins, fails and drops
as the test says, and behaves like the ESP32 port's (ports/esp32/network_wlan.c) while it does.

Layer: unix-port shim. The address comes from $PIFLEET_SIM_IP (default 127.0.0.1). Never copied to a board.
inputs.json "wifi" (read at every call, so a test may change it while the board runs):
  join_ms     how long one attempt to join takes (default 0: at once)
  fail        how many attempts fail (no AP found) before one succeeds (counted from the board's start)
  reconnects  like wlan.config(reconnects=N): the station gives up after N failed attempts and status() is the
              failure's reason until connect() is called again; 0 (the port's default) retries for ever
  drop        a number: each new value drops the link (beacon timeout); the station joins again by itself
As on the port, connect() while the station is connecting raises OSError("Wifi Internal Error"), and status()
is STAT_CONNECTING from connect() until the link is up or the attempts given are used up.
"""

import os
import time

import _simio

STA_IF = 0
AP_IF = 1
# the ESP32 port's values (ports/esp32/modnetwork.h)
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_BEACON_TIMEOUT = 200
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
STAT_ASSOC_FAIL = 203
STAT_HANDSHAKE_TIMEOUT = 204

if hasattr(time, "ticks_ms"):
    _ms, _diff = time.ticks_ms, time.ticks_diff  # (_simticks may have put the ESP32's 30-bit counter there)
else:  # the virtual board's files under CPython (no MicroPython on this host)

    def _ms():
        return time.monotonic_ns() // 1000000

    def _diff(a, b):
        return a - b


_attempts = 0  # attempts made since the board started (the "fail" count runs over all of them)


def _ip():
    return os.getenv("PIFLEET_SIM_IP") or "127.0.0.1"


class WLAN:
    def __init__(self, interface=STA_IF):
        self._interface = interface
        self._active = False
        self._ssid = None
        self._requested = False  # connect() was called and not undone by disconnect()
        self._connected = False
        self._reason = 0  # why the last attempt or the link failed (0: none)
        self._tries = 0  # failed attempts since connect()
        self._started = 0  # ticks_ms of the attempt in progress
        self._drop = None

    def _settings(self):
        return _simio.read_kind("wifi")

    def _step(self):
        """Move the station on to now: an attempt ends after join_ms; a new "drop" value breaks the link."""
        global _attempts
        wifi = self._settings()
        drop = wifi.get("drop")
        if self._drop is None:
            self._drop = drop
        elif drop != self._drop:
            self._drop = drop
            if self._connected:
                print("wifi: STA_DISCONNECTED, reason:%d (beacon timeout)" % STAT_BEACON_TIMEOUT)
                self._connected = False
                self._reason = STAT_BEACON_TIMEOUT
                self._tries = 0
                self._started = _ms()
        while self._requested and not self._connected and not self._given_up(wifi):
            if _diff(_ms(), self._started) < int(wifi.get("join_ms", 0)):
                return
            _attempts += 1
            if _attempts <= int(wifi.get("fail", 0)):
                self._reason = STAT_NO_AP_FOUND
                self._tries += 1
                self._started = _ms()  # the station tries again at once
                print("wifi: STA_DISCONNECTED, reason:%d (no AP found)" % STAT_NO_AP_FOUND)
            else:
                self._connected = True
                self._reason = 0

    def _given_up(self, wifi):
        reconnects = int(wifi.get("reconnects", 0))
        return reconnects > 0 and self._tries >= reconnects

    def active(self, flag=None):
        if flag is None:
            return self._active
        self._active = bool(flag)
        if not self._active:
            self._requested = self._connected = False
        return None

    def connect(self, ssid=None, key=None, *, bssid=None):
        if not self._active:
            raise OSError("Wifi Not Started")
        self._step()
        if self.status() == STAT_CONNECTING:
            raise OSError("Wifi Internal Error")  # what esp_wifi_connect() answers while it is still at it
        self._ssid = ssid
        self._requested = True
        self._connected = False
        self._tries = 0
        self._started = _ms()
        self._step()

    def disconnect(self):
        self._requested = self._connected = False

    def isconnected(self):
        self._step()
        return self._connected

    def status(self, param=None):
        if param is not None:
            return -60 if param == "rssi" else None
        self._step()
        if self._connected:
            return STAT_GOT_IP
        if self._requested and not self._given_up(self._settings()):
            return STAT_CONNECTING
        return self._reason or STAT_IDLE

    def ifconfig(self, config=None):
        if not self._connected:
            return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")
        return (_ip(), "255.0.0.0", "127.0.0.1", "127.0.0.1")

    def config(self, name=None, **kwargs):
        if name == "mac":
            return bytes([0x24, 0x0A] + [int(part) for part in _ip().split(".")])
        if name == "ssid":
            return self._ssid
        return None
