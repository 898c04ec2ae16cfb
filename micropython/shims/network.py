"""`network` for the virtual ESP32: a WLAN station with the board's loopback address that joins, fails and drops
as the test says, the board's own access point, and both behaving like the ESP32 port's (ports/esp32/
network_wlan.c) while they do.

Layer: unix-port shim. The address comes from $PIFLEET_SIM_IP (default 127.0.0.1). Never copied to a board.
inputs.json "wifi" (read at every call, so a test may change it while the board runs):
  networks    {SSID: {"psk": KEY, "present": true}}: the networks around the board (a router switched off is
              "present": false, or not listed). Without "networks" any SSID joins (the tests' default network).
              An absent network: the attempt fails with STAT_NO_AP_FOUND and the station tries again by itself;
              a wrong key: STAT_WRONG_PASSWORD, and the station stops (the port sets no reconnect on AUTH_FAIL).
              The network the station is on going away (or its key changing) drops the link (beacon timeout).
  join_ms     how long one attempt to join takes (default 0: at once)
  fail        how many attempts fail (no AP found) before one succeeds (counted from the board's start)
  reconnects  the station gives up after N failed attempts and status() is the failure's reason until connect()
              is called again; 0 (the port's default) retries for ever. wlan.config(reconnects=N) does the same
              from the board's side, as on the port (N + 1 attempts; -1: for ever); inputs.json's value wins
  drop        a number: each new value drops the link (beacon timeout); the station joins again by itself
As on the port, connect() while the station is connecting raises OSError("Wifi Internal Error"), and status()
is STAT_CONNECTING from connect() until the link is up or the attempts given are used up. WLAN(STA_IF) and
WLAN(AP_IF) are one object each, as on the port.

The access point (WLAN(AP_IF)): active(True) and config(essid=…, password=…, authmode=…) write io/ap.json
({"active", "essid", "authmode"} — what a phone scanning for networks would see; the password only goes to the
console, as the agent prints it); its address is the board's own, so a page the board serves there is on
$PIFLEET_SIM_IP. No station ever associates with it (a test opens the page over loopback).
"""

import json
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
_ASSOC_LEAVE = 8  # the reason after disconnect()
AUTH_OPEN = 0
AUTH_WPA2_PSK = 3

if hasattr(time, "ticks_ms"):
    _ms, _diff = time.ticks_ms, time.ticks_diff  # (_simticks may have put the ESP32's 30-bit counter there)
else:  # the virtual board's files under CPython (no MicroPython on this host)

    def _ms():
        return time.monotonic_ns() // 1000000

    def _diff(a, b):
        return a - b


_attempts = 0  # attempts made since the board started (the "fail" count runs over all of them)
_interfaces = {}  # interface -> its one WLAN object


def _ip():
    return os.getenv("PIFLEET_SIM_IP") or "127.0.0.1"


def _mac():
    """The chip's base MAC, as esptool reads it from the virtual chip's eFuses (PIFLEET_SIM_MAC, 12 hex digits):
    a real ESP32's station interface has that MAC. Without it (a shim run on its own): one made of the address."""
    mac = os.getenv("PIFLEET_SIM_MAC")
    if mac:
        return bytes(int(mac[i : i + 2], 16) for i in range(0, 12, 2))
    return bytes([0x24, 0x0A] + [int(part) for part in _ip().split(".")])


def _around(wifi, ssid, key):
    """What an attempt to join ssid with key finds: 0 (it joins), STAT_NO_AP_FOUND or STAT_WRONG_PASSWORD."""
    networks = wifi.get("networks")
    if networks is None:
        return 0
    net = networks.get(ssid)
    if not isinstance(net, dict) or not net.get("present", True):
        return STAT_NO_AP_FOUND
    return 0 if net.get("psk", "") == (key or "") else STAT_WRONG_PASSWORD


def WLAN(interface=STA_IF):  # noqa: N802 — the port's name
    wlan = _interfaces.get(interface)
    if wlan is None:
        wlan = _interfaces[interface] = _WLAN(interface)
    return wlan


class _WLAN:
    def __init__(self, interface):
        self._interface = interface
        self._active = False
        self._ssid = None
        self._key = None
        self._requested = False  # connect() was called and not undone by disconnect() or a wrong key
        self._connected = False
        self._reason = 0  # why the last attempt or the link failed (0: none)
        self._tries = 0  # failed attempts since connect()
        self._started = 0  # ticks_ms of the attempt in progress
        self._drop = None
        self._reconnects = 0  # wlan.config(reconnects=N): N + 1 attempts (the port's conf_wifi_sta_reconnects)
        self._ap = {"active": False, "essid": "ESP_%s" % _ip().replace(".", ""), "authmode": AUTH_OPEN}

    def _settings(self):
        return _simio.read_kind("wifi")

    def _lost(self, reason, why):
        print("wifi: STA_DISCONNECTED, reason:%d (%s)" % (reason, why))
        self._connected = False
        self._reason = reason
        self._tries = 0
        self._started = _ms()

    def _step(self):
        """Move the station on to now: an attempt ends after join_ms; a new "drop" value, or the network going
        away, breaks the link."""
        global _attempts
        if self._interface != STA_IF:
            return
        wifi = self._settings()
        drop = wifi.get("drop")
        if self._drop is None:
            self._drop = drop
        elif drop != self._drop:
            self._drop = drop
            if self._connected:
                self._lost(STAT_BEACON_TIMEOUT, "beacon timeout")
        if self._connected and _around(wifi, self._ssid, self._key):
            self._lost(STAT_BEACON_TIMEOUT, "beacon timeout")  # its router is gone (or took a new key)
        while self._requested and not self._connected and not self._given_up(wifi):
            if _diff(_ms(), self._started) < int(wifi.get("join_ms", 0)):
                return
            _attempts += 1
            found = STAT_NO_AP_FOUND if _attempts <= int(wifi.get("fail", 0)) else _around(wifi, self._ssid, self._key)
            if found == STAT_WRONG_PASSWORD:
                print("wifi: STA_DISCONNECTED, reason:%d (authentication failed)" % found)
                self._reason = found
                self._requested = False  # the port does not reconnect after AUTH_FAIL
            elif found:
                self._reason = found
                self._tries += 1
                self._started = _ms()  # the station tries again at once
                print("wifi: STA_DISCONNECTED, reason:%d (no AP found)" % found)
            else:
                self._connected = True
                self._reason = 0

    def _given_up(self, wifi):
        reconnects = int(wifi.get("reconnects", 0)) or self._reconnects
        return reconnects > 0 and self._tries >= reconnects

    def _publish_ap(self):
        # one write of a few bytes (os.rename is not there through the sim's /host mount): a reader that comes
        # between the truncation and the write reads again
        with open(_simio._path("ap.json"), "w") as f:
            f.write(json.dumps(self._ap))

    def active(self, flag=None):
        if flag is None:
            return self._active
        self._active = bool(flag)
        if self._interface == AP_IF:
            self._ap["active"] = self._active
            self._publish_ap()
        elif not self._active:
            self._requested = self._connected = False
        return None

    def connect(self, ssid=None, key=None, *, bssid=None):
        if not self._active:
            raise OSError("Wifi Not Started")
        self._step()
        if self.status() == STAT_CONNECTING:
            raise OSError("Wifi Internal Error")  # what esp_wifi_connect() answers while it is still at it
        self._ssid = ssid
        self._key = key
        self._requested = True
        self._connected = False
        self._tries = 0
        self._started = _ms()
        self._step()

    def disconnect(self):
        if self._connected:
            print("wifi: STA_DISCONNECTED, reason:%d (assoc leave)" % _ASSOC_LEAVE)
        if self._requested or self._connected:
            self._reason = _ASSOC_LEAVE
        self._requested = self._connected = False

    def isconnected(self):
        self._step()
        return self._connected

    def scan(self):
        """(ssid, bssid, channel, RSSI, authmode, hidden) of every network around (the port blocks ~2 s here)."""
        if not self._active:
            raise OSError("Wifi Not Started")
        found = []
        for i, (ssid, net) in enumerate(sorted((self._settings().get("networks") or {}).items())):
            if isinstance(net, dict) and net.get("present", True):
                auth = AUTH_WPA2_PSK if net.get("psk") else AUTH_OPEN
                found.append((ssid.encode(), bytes([2, 0, 0, 0, 0, i]), 1 + i % 11, -50 - 5 * i, auth, False))
        return found

    def status(self, param=None):
        if param is not None:
            return -60 if param == "rssi" else None
        if self._interface != STA_IF:
            return STAT_IDLE
        self._step()
        if self._connected:
            return STAT_GOT_IP
        if self._requested and not self._given_up(self._settings()):
            return STAT_CONNECTING
        return self._reason or STAT_IDLE

    def ifconfig(self, config=None):
        if self._interface == AP_IF:
            return (_ip(), "255.255.255.0", _ip(), _ip()) if self._active else ("0.0.0.0",) * 4
        if not self._connected:
            return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")
        return (_ip(), "255.0.0.0", "127.0.0.1", "127.0.0.1")

    def config(self, name=None, **kwargs):
        if self._interface == AP_IF and kwargs:
            for key in ("essid", "ssid", "authmode"):
                if key in kwargs:
                    self._ap["essid" if key == "ssid" else key] = kwargs[key]
            if kwargs.get("password") and "authmode" not in kwargs:
                self._ap["authmode"] = AUTH_WPA2_PSK
            self._publish_ap()
            return None
        if "reconnects" in kwargs:  # the port: -1 retries for ever (0 inside), N makes N + 1 attempts
            self._reconnects = 0 if kwargs["reconnects"] == -1 else int(kwargs["reconnects"]) + 1
            return None
        if name == "mac":
            return _mac()
        if name in ("ssid", "essid"):
            return self._ap["essid"] if self._interface == AP_IF else self._ssid
        if name == "authmode" and self._interface == AP_IF:
            return self._ap["authmode"]
        return None
