"""Access-point provisioning: a board that has no Wi-Fi credentials, or joined none of its networks for
wifi.fallback_s, opens its own access point with a small page for new ones (issue 17; ESPHome's fallback
hotspot, Tasmota's Wi-Fi manager).

Layer: device side, start-up (loaded by agent/setup.py only in this mode, forgotten once a network works). It
must not hold protocol logic: once joined it returns the board's address and the start-up goes on as always
(finding the master, adoption when the board has no identity).

- The access point is `pifleet-XXXXXX` (the last 3 bytes of the station's MAC, hex), WPA2. Its password is
  printed on the console (only there: not into the log ring the master reads). A board the master paired has a
  secret, and the password is derived from it — the first 60 bits of HMAC-SHA-256(secret, "pifleet-ap") in
  base32, lower case — so the master can show it for a known board (`pifleet wifi ap NAME`,
  pifleet/wifi.py ap_password); a board never paired makes one up at each start.
- The page, on the access point's address, port 80 (8080 where 80 cannot be bound: a virtual board run by an
  ordinary user): a form with the networks around (scan) or a typed name, the key and optionally the master's
  address. A DNS responder on port 53 answers every name with that address, so a phone that joined the access
  point finds the page by itself (http://192.168.4.1/ on an ESP32 otherwise).
- While it is open the board keeps trying its known networks (and the one just typed, first) one after the
  other; the first that works closes the page and the access point. A typed network is saved into config.json
  (first in preference) only once the board has joined it: a wrong key is never kept. A wrong key or a missing
  network is said on the page. Once joined, a MicroPython board resets: the next start joins that network at once,
  and the agent runs without the names this module interned (they are never freed).
"""

import json
import os
import select
import socket
from hashlib import sha256

import network

from agent.port import IS_MICROPYTHON, collect, const, random_bytes, sockaddr, ticks_diff, ticks_ms

_LOOK_MS = const(10000)  # how long one network is given before the next is tried
_MIN_MS = const(3000)
_POLL_MS = const(200)
_MAX_REQUEST = const(1536)
_B32 = "abcdefghijklmnopqrstuvwxyz234567"

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>%s</title></head><body><h1>%s</h1><p>%s</p><form method="post" action="/">
<p><label>Network <select name="ssid">%s</select></label></p>
<p><label>or type its name <input name="typed" maxlength="32"></label></p>
<p><label>Key <input name="psk" type="password" maxlength="64"></label></p>
<p><label>Master (optional) <input name="master" placeholder="192.168.1.2:5683"></label></p>
<p><button>Join</button></p></form></body></html>"""


def ap_password(secret_hex):
    """The access point's WPA2 password: derived from the board's secret (the master can show it), else random."""
    if secret_hex:
        pad = bytearray(64)  # HMAC's padded key, XORed in place (no generator: the start-up's heap is full of code)
        pad[:32] = bytes.fromhex(secret_hex)[:32]
        for i in range(64):
            pad[i] ^= 0x36
        inner = sha256(pad)
        inner.update(b"pifleet-ap")
        for i in range(64):
            pad[i] ^= 0x36 ^ 0x5C
        outer = sha256(pad)
        outer.update(inner.digest())
        raw = outer.digest()
    else:
        raw = random_bytes(8)
    bits = int.from_bytes(raw[:8], "big") >> 4  # 60 bits: 12 base32 characters
    return "".join(_B32[(bits >> (55 - 5 * i)) & 31] for i in range(12))


def _escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _unquote(text):
    """application/x-www-form-urlencoded value -> str."""
    data = text.replace("+", " ").encode()
    out = bytearray()
    i = 0
    while i < len(data):
        if data[i] == 37 and i + 3 <= len(data):  # "%XX"
            try:
                out.append(int(data[i + 1 : i + 3], 16))
                i += 3
                continue
            except ValueError:
                pass
        out.append(data[i])
        i += 1
    return out.decode()


def _form(body):
    fields = {}
    for pair in body.split("&"):
        key, _, value = pair.partition("=")
        fields[_unquote(key)] = _unquote(value)
    return fields


def _nets(wifi):
    """The known networks of config.json's "wifi": [[ssid, psk], …] (or the one {"ssid", "psk"} of before)."""
    return wifi.get("nets") or ([[wifi["ssid"], wifi.get("psk", "")]] if wifi.get("ssid") else [])


def _answer_dns(sock, ip):
    """Answer every DNS question for an A record with our own address (the captive part: a phone that joined the
    access point probes some web address, lands on our page and shows it); other types get no answer record."""
    try:
        query, addr = sock.recvfrom(512)
    except OSError:
        return  # nothing waiting
    if len(query) < 17 or query[2] & 0xF8:  # too short, or a response / not a standard query
        return
    end = 12
    while end < len(query) and query[end]:
        end += 1 + query[end]  # the name's labels
    end += 5  # its terminating zero, type and class
    if end > len(query):
        return
    a = query[end - 4 : end - 2] == b"\x00\x01"
    head = query[:2] + b"\x81\x80\x00\x01\x00" + (b"\x01" if a else b"\x00") + b"\x00\x00\x00\x00"
    answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes(int(x) for x in ip.split(".")) if a else b""
    try:
        sock.sendto(head + query[12:end] + answer, addr)
    except OSError:
        pass


def save(config, path):
    tmp = path + ".new"
    with open(tmp, "w") as f:
        json.dump(config, f)
    os.rename(tmp, path)  # a power cut leaves the old file or the new one


class Portal:
    def __init__(self, config, path, sta):
        self.config = config
        self.path = path
        self.sta = sta
        self.typed = None  # [ssid, psk, master] from the page, tried first until it works or fails
        self.note = "Choose the network this board should join."
        self.tried = 0  # index into the candidates
        self.since = 0  # ticks of the current attempt
        self.current = None

    def candidates(self):
        known = _nets(self.config.get("wifi") or {})
        return ([self.typed[:2]] if self.typed else []) + [n for n in known if not self.typed or n[0] != self.typed[0]]

    def page(self):
        try:
            around = sorted({found[0].decode() for found in self.sta.scan() if found[0]})
        except OSError:
            around = []
        options = "".join("<option>%s</option>" % _escape(s) for s in around) or "<option></option>"
        name = self.name
        return _PAGE % (name, name, _escape(self.note), options)

    def handle(self, conn):
        conn.settimeout(3)
        data = b""
        while b"\r\n\r\n" not in data and len(data) < _MAX_REQUEST:
            chunk = conn.recv(512)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        line = head.split(b"\r\n", 1)[0].split()
        if len(line) < 2:
            return
        if line[0] == b"POST":
            length = 0
            for header in head.split(b"\r\n")[1:]:
                key, _, value = header.partition(b":")
                if key.strip().lower() == b"content-length":
                    length = min(int(value.strip()), _MAX_REQUEST)
            while len(body) < length:
                chunk = conn.recv(512)
                if not chunk:
                    break
                body += chunk
            form = _form(body.decode())
            ssid = (form.get("typed") or form.get("ssid") or "").strip()
            master = form.get("master", "").strip()
            host, _, port = master.partition(":")
            if master and not (port or "5683").isdigit():
                self.note = "The master's address is HOST or HOST:PORT."
            elif ssid:
                self.typed = [ssid, form.get("psk", ""), master]
                self.tried = 0
                self.since = None  # try it now
                self.note = "Joining %s … this page stops answering once the board is on it." % ssid
                print("portal: trying %r from the page" % ssid)
            else:
                self.note = "Give the network's name."
            conn.sendall(b"HTTP/1.0 303 See Other\r\nLocation: /\r\nContent-Length: 0\r\n\r\n")
            return
        page = self.page().encode()
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nCache-Control: no-store\r\n")
        conn.sendall(("Content-Length: %d\r\n\r\n" % len(page)).encode())
        conn.sendall(page)

    def step(self):
        """Try the next network when the current one had its time, or failed (not sooner than _MIN_MS: a key the
        router refuses at once must not make the station ask it five times a second)."""
        sta = self.sta
        status = sta.status()
        if self.since is not None:  # None: nothing tried yet, or a network just came from the page
            elapsed = ticks_diff(ticks_ms(), self.since)
            if elapsed < _LOOK_MS and (status == network.STAT_CONNECTING or elapsed < _MIN_MS):
                return
            if self.typed and self.current and self.current[0] == self.typed[0]:
                if status == network.STAT_WRONG_PASSWORD:
                    self.note = "Wrong key for %s: type it again." % self.typed[0]
                else:
                    self.note = "%s did not answer: is it in reach?" % self.typed[0]
                print("portal: %r from the page did not work (status %d)" % (self.typed[0], status))
                self.typed = None
        nets = self.candidates()
        if not nets:
            return
        self.current = nets[self.tried % len(nets)]
        self.tried += 1
        try:
            sta.disconnect()
            sta.connect(self.current[0], self.current[1])
        except OSError as exc:
            print("portal: connect:", exc)
        self.since = ticks_ms()

    def run(self):
        """Serve the page and try the networks until one works; return the board's address on it."""
        collect()  # what the join left, before the page's buffers
        sta = self.sta
        mac = sta.config("mac")
        ssid = "pifleet-%02x%02x%02x" % (mac[3], mac[4], mac[5])
        password = ap_password(self.config.get("secret"))
        self.name = ssid
        ap = network.WLAN(network.AP_IF)
        ap.active(True)
        ap.config(essid=ssid, password=password, authmode=3)  # 3: WPA2-PSK
        ip = ap.ifconfig()[0]
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        port = 80
        try:
            server.bind(sockaddr(ip, port))
        except OSError:
            port = 8080  # an ordinary user's virtual board
            server.bind(sockaddr(ip, port))
        server.listen(2)
        from agent import log  # the password only on the console, not in the ring the master reads

        print("portal: access point %s open; no known network for now" % ssid)
        getattr(log, "_print", print)("portal: password %s" % password)
        print("portal: open http://%s:%d/" % (ip, port))
        dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            dns.bind(sockaddr(ip, 53))
            dns.setblocking(False)
        except OSError as exc:  # an ordinary user's virtual board: no captive DNS, the address still works
            print("portal: no DNS:", exc)
            dns.close()
            dns = None
        poller = select.poll()
        poller.register(server, select.POLLIN)
        self.since = None
        try:
            while not sta.isconnected():
                for _ in poller.poll(_POLL_MS):
                    conn, _ = server.accept()
                    try:
                        self.handle(conn)
                    except (OSError, ValueError) as exc:
                        print("portal: request:", exc)
                    finally:
                        conn.close()
                if dns is not None:
                    _answer_dns(dns, ip)
                self.step()
        finally:
            poller.unregister(server)
            server.close()
            if dns is not None:
                dns.close()
            ap.active(False)
        joined = self.current
        if self.typed and joined[0] == self.typed[0]:
            wifi = self.config.get("wifi") or {}
            known = _nets(wifi)
            old = known[len(known) - wifi.pop("old", 0) :]  # the old networks a push keeps meanwhile (agent/wifi.py)
            if old and joined[0] in [n[0] for n in known if n not in old]:
                known = [n for n in known if n not in old]  # one of the pushed ones: the old are forgotten, as there
                old = []
            wifi["nets"] = [joined[:2]] + [n for n in known if n[0] != joined[0]]
            old = [n for n in old if n[0] != joined[0]]
            if old:
                wifi["old"] = len(old)
            wifi.pop("ssid", None)
            wifi.pop("psk", None)
            self.config["wifi"] = wifi
            master = self.typed[2]
            if master:
                host, _, port = master.partition(":")
                self.config["master"] = {"host": host, "port": int(port or 5683)}
            save(self.config, self.path)
        print("portal: joined %r; access point %s closed" % (joined[0], ssid))
        if IS_MICROPYTHON:
            # start afresh on that network: the names this module interned (a few hundred bytes, never freed)
            # would otherwise stay in the heap of the agent that runs from now on (agent/setup.py)
            import machine

            machine.reset()
        return sta.ifconfig()[0]


def run(config, path, sta):
    return Portal(config, path, sta).run()
