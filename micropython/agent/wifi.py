"""The board's Wi-Fi while the agent runs: GET /w (which network the board is on) and PUT /w (new credentials
from the master: the household changed its router; pifleet/wifi.py). OSCORE-protected like every request to a
paired board (agent/endpoint.py refuses it unprotected).

Layer: device side, application (part of agent/admin.py's rare resources): imported for the request, and kept only
while a switch to new credentials runs (then forgotten). It must not hold protocol logic.

PUT /w {"nets": [[ssid, psk], …], "fallback_s": N} answers at once (2.04, the board's state) and then, in the
background: the new networks go first into config.json, the old ones stay behind them ("old": their count), and the
board tries the new ones in order (each for up to _JOIN_MS; one that is not there fails after a few attempts), then
the old ones. On a new one it drops the old from config.json; back on an old one it keeps both (the next boot tries
the new first again) and watches the link: gone for _LOST_LOOKS looks (the old router taken away), it switches
again, new ones first. On none it resets, and the boot tries them all, then opens its access point after
fallback_s (agent/setup.py, agent/portal.py). The watch (this module, kept in the heap only on a board with new
networks pending) starts again when the master asks GET /w after a restart. A key never goes to the console.
A board whose link has been gone for fallback_s (agent/app.py's pulse counts) comes here too, lost(): it notes it
and resets into its access point.
GET /w: {"ssid": the network it is on (null: none), "busy": a switch is running, "old": old networks kept}.
"""

import asyncio
import json
import os

import network

from agent import coap
from agent.port import IS_MICROPYTHON, const, forget, sleep_ms

_BAD_REQUEST = const(128)
_CHANGED = const(68)
_CONTENT = const(69)
_CONTENT_FORMAT = const(12)
_GET = const(1)
_JSON = const(50)
_METHOD_NOT_ALLOWED = const(133)
_PUT = const(3)

_JOIN_MS = const(20000)  # how long one network is given during a switch
_LOOK_MS = const(250)
_TRIES = const(2)  # a network that is not there: the station gives up after 3 attempts (reconnects=2)
_WATCH_MS = const(2000)  # with new networks pending: how often the link is looked at
_LOST_LOOKS = const(3)  # looks without a link before the board switches again (a short drop heals by itself)
_CONFIG = "config.json"


def _nets(wifi):
    return wifi.get("nets") or ([[wifi["ssid"], wifi.get("psk", "")]] if wifi.get("ssid") else [])


def _load():
    with open(_CONFIG) as f:
        return json.load(f)


def _save(config):
    tmp = _CONFIG + ".new"
    with open(tmp, "w") as f:
        json.dump(config, f)
    os.rename(tmp, _CONFIG)  # a power cut leaves the old file or the new one


def _state(res, code):
    sta = network.WLAN(network.STA_IF)
    wifi = _load().get("wifi") or {}
    body = {
        "ssid": sta.config("ssid") if sta.isconnected() else None,
        "busy": bool(getattr(res, "wifi_busy", 0)),
        "old": wifi.get("old", 0),
    }
    return code, [(_CONTENT_FORMAT, coap.uint(_JSON))], json.dumps(body).encode()


def _refused(field, why):
    return _BAD_REQUEST, [(_CONTENT_FORMAT, coap.uint(_JSON))], json.dumps({"field": field, "error": why}).encode()


def _checked(payload):
    """The new networks of a PUT /w, or (field, why)."""
    try:
        body = json.loads(payload)
    except ValueError:
        return "body", "not JSON"
    nets = body.get("nets") if isinstance(body, dict) else None
    if not isinstance(nets, list) or not 0 < len(nets) <= 8:
        return "nets", "1 to 8 networks [ssid, psk]"
    for net in nets:
        if not (isinstance(net, list) and len(net) == 2 and isinstance(net[0], str) and isinstance(net[1], str)):
            return "nets", "each network is [ssid, psk]"
        if not 0 < len(net[0]) <= 32 or len(net[1]) > 64 or 0 < len(net[1]) < 8:
            return "nets", "an SSID of 1 to 32 characters, a key of 8 to 64 (or none)"
    fallback = body.get("fallback_s", 0)
    if not isinstance(fallback, int) or fallback < 0:
        return "fallback_s", "seconds"
    return nets, fallback


def handle(res, msg):
    if msg.code == _GET:
        if (_load().get("wifi") or {}).get("old") and not getattr(res, "wifi_busy", 0):
            _watching(res)  # new networks pending (from before a restart): watch the link again
        forget("wifi")
        return _state(res, _CONTENT)
    if msg.code != _PUT:
        forget("wifi")
        return _METHOD_NOT_ALLOWED, [], b""
    nets, fallback = _checked(msg.payload)
    if isinstance(nets, str):
        forget("wifi")
        return _refused(nets, fallback)
    if getattr(res, "wifi_busy", 0):
        forget("wifi")
        return _state(res, _CHANGED)  # the switch in progress goes on; the master asks again
    watch = getattr(res, "wifi_watch", None)
    if watch is not None:
        watch.cancel()  # these networks replace the pending ones
        res.wifi_watch = None
    config = _load()
    wifi = config.get("wifi") or {}
    names = [n[0] for n in nets]
    old = [n for n in _nets(wifi) if n[0] not in names]
    config["wifi"] = {"nets": nets + old, "fallback_s": fallback or wifi.get("fallback_s", 300)}
    if old:
        config["wifi"]["old"] = len(old)
    _save(config)
    from agent import port

    if port.AGENT is not None:
        port.AGENT.wifi[2] = config["wifi"]["fallback_s"] * 4  # in pulses (agent/app.py)
    res.wifi_busy = 1
    asyncio.create_task(_switch(res, nets, old))
    forget("wifi")  # the task keeps what it needs
    return _state(res, _CHANGED)


async def _join(sta, ssid, psk):
    print("wifi: trying %r" % ssid)
    try:
        sta.disconnect()
        sta.config(reconnects=_TRIES)  # a network that is not there fails in a few seconds, not at _JOIN_MS
        sta.connect(ssid, psk)
    except OSError as exc:
        print("wifi: connect:", exc)
        return False
    waited = 0
    while waited < _JOIN_MS:
        await sleep_ms(_LOOK_MS)
        waited += _LOOK_MS
        if sta.isconnected():
            return True
        if sta.status() != network.STAT_CONNECTING:
            return False  # a wrong key (the station stops), or it gave up
    return False


async def _switch(res, nets, old):
    """Try the new networks, then the old ones; keep the old ones in config.json until a new one worked. Back on an
    old one, watch the link: when it goes, switch again (the household took the old router away)."""
    sta = network.WLAN(network.STA_IF)
    names = [n[0] for n in nets]
    res.wifi_busy = 1
    try:
        joined = sta.config("ssid") if sta.isconnected() else None
        if joined not in names:
            joined = None
            for ssid, psk in nets + old:
                if await _join(sta, ssid, psk):
                    joined = ssid
                    break
        if joined in names:
            config = _load()
            config["wifi"]["nets"] = nets
            config["wifi"].pop("old", None)
            _save(config)
            print("wifi: on the new network %r; the old ones are forgotten" % joined)
        elif joined is not None:
            print("wifi: back on %r; the new networks are kept for later" % joined)
            _watching(res)
        else:
            print("wifi: no network works; restarting (the access point follows after fallback_s)")
            if IS_MICROPYTHON:
                import machine

                machine.reset()
    finally:
        sta.config(reconnects=-1)  # from now on the station keeps at its network by itself again
        res.wifi_busy = 0


def lost(agent):
    """agent/app.py's pulse: the link has been gone for wifi.fallback_s (the station kept trying its network). Note it
    in the file wifi.lost and reset: the next start opens the access point at once (agent/setup.py), where the role
    modules are not loaded, and its portal keeps trying every known network and closes once one works (a reset, and
    the agent starts on it). A switch to new networks, or their watch, decides by itself (it resets when none works)."""
    res = agent.resources
    agent.wifi[1] = 0
    if IS_MICROPYTHON and not (getattr(res, "wifi_busy", 0) or getattr(res, "wifi_watch", None)):
        print("wifi: no known network for %d s; restarting into the access point" % (agent.wifi[2] // 4))
        with open("wifi.lost", "w") as f:
            f.write("1")
        import machine

        machine.reset()
    forget("wifi")


def _watching(res):
    if getattr(res, "wifi_watch", None) is None:
        res.wifi_watch = asyncio.create_task(_watch(res))


async def _watch(res):
    """New networks pending, the board on an old one: when the link has been gone for _LOST_LOOKS looks, try the new
    networks, then the old ones again (_switch resets the board when none works). Ends once a new one worked."""
    sta = network.WLAN(network.STA_IF)
    lost = 0
    try:
        while True:  # noqa: ASYNC110 — a look every _WATCH_MS is the point (there is no link event to wait on)
            await sleep_ms(_WATCH_MS)
            if sta.isconnected() or getattr(res, "wifi_busy", 0):
                lost = 0
                continue
            lost += 1
            if lost < _LOST_LOOKS:
                continue
            wifi = _load().get("wifi") or {}
            nets = _nets(wifi)
            pending = len(nets) - wifi.get("old", 0)
            if not wifi.get("old"):
                res.wifi_watch = None  # a new network worked meanwhile
                return
            print("wifi: the link is gone; trying the new networks again")
            res.wifi_watch = None  # _switch starts a new watch if it ends on an old network again
            await _switch(res, nets[:pending], nets[pending:])
            return
    except asyncio.CancelledError:
        pass  # new credentials came: their switch watches again if it must
