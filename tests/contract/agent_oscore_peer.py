# A tiny OSCORE peer over real UDP on loopback, built from the agent's CoAP codec and OSCORE module, for the
# interoperation tests with aiocoap. Written for both interpreters.
#   agent_oscore_peer.py server PORT SEQFILE   serve /hello (GET) and /echo (POST) as the board (sender id 01) until
#                                        POST /stop; the replay window starts unknown, so the first request is
#                                        answered with an Echo challenge (RFC 8613 Appendix B.1.2)
#   agent_oscore_peer.py client PORT SEQFILE   as the board, ask an aiocoap server (sender id empty) three times,
#                                        answering its Echo challenge
# Both print one JSON line of what happened. Master secret and salt are fixed (the test's aiocoap side uses
# the same).
import json
import socket
import sys

from agent import coap, oscore
from agent.port import sockaddr

SECRET = bytes(range(1, 33))
SALT = b"pifleet"
BOARD_ID = b"\x01"
MASTER_ID = b""


def reply_to(inner):
    path = inner.path()
    if path == "hello" and inner.code == coap.GET:
        query = [v.decode() for v in inner.option_values(coap.URI_QUERY)]
        return coap.CONTENT, b"hello " + "&".join(query).encode()
    if path == "echo" and inner.code == coap.POST:
        return coap.CHANGED, bytes(reversed(inner.payload))
    if path == "stop":
        return coap.DELETED, b""
    return coap.NOT_FOUND, b""


def serve(port, seqfile):
    ctx = oscore.Context(SECRET, SALT, BOARD_ID, MASTER_ID, store=oscore.FileStore(seqfile))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(sockaddr("127.0.0.1", port))
    sock.settimeout(20)
    print("ready", port)
    seen = {"requests": [], "refused": [], "echo_challenges": 0, "dropped": 0}
    while True:
        data, addr = sock.recvfrom(1500)
        try:
            msg = coap.decode(data)
        except coap.DecodeError:
            seen["dropped"] += 1
            continue
        if not msg.is_request():
            continue
        done = False
        try:
            inner, rid = ctx.unprotect_request(msg)
        except oscore.EchoRequiredError as exc:
            seen["echo_challenges"] += 1
            answer = ctx.echo_response(msg, exc.rid)
        except oscore.OscoreError as exc:
            seen["refused"].append(exc.reason)
            answer = oscore.error_response(msg, exc)
        else:
            code, payload = reply_to(inner)
            seen["requests"].append([coap.code_str(inner.code), inner.path(), payload.decode()])
            plain = coap.Message(coap.ACK, code, msg.mid, msg.token, [(coap.CONTENT_FORMAT, b"")], payload)
            answer = ctx.protect_response(plain, rid)
            done = inner.path() == "stop"
        sock.sendto(coap.encode(answer), addr)
        if done:
            break
    seen["seq"] = ctx.seq
    print(json.dumps(seen))


class Client:
    def __init__(self, port, seqfile):
        self.ctx = oscore.Context(SECRET, SALT, BOARD_ID, MASTER_ID, store=oscore.FileStore(seqfile))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(10)
        self.addr = sockaddr("127.0.0.1", port)
        self.mid = 0x1000
        self.echo_retries = 0

    def exchange(self, plain):
        """Protect, send as CON, wait for the piggy-backed (or separate) response; unprotect it."""
        self.mid += 1
        plain.mid = self.mid
        plain.token = bytes((self.mid & 0xFF, 0x42))
        outer, rid = self.ctx.protect_request(plain)
        self.sock.sendto(coap.encode(outer), self.addr)
        while True:
            data, addr = self.sock.recvfrom(1500)
            msg = coap.decode(data)
            if msg.type == coap.CON:  # a separate response: acknowledge it
                self.sock.sendto(coap.encode(coap.Message(coap.ACK, coap.EMPTY, msg.mid)), addr)
            if msg.code != coap.EMPTY and msg.token == plain.token:
                return self.ctx.unprotect_response(msg, rid)

    def request(self, code, path, payload=b"", query=()):
        options = coap.path_options(coap.URI_PATH, path) + [(coap.URI_QUERY, q.encode()) for q in query]
        answer = self.exchange(coap.Message(coap.CON, code, 0, b"", list(options), payload))
        echo = answer.option(oscore.ECHO)
        if answer.code == oscore.UNAUTHORIZED and echo is not None:
            # The server does not know our sequence numbers yet (it restarted): prove freshness, once.
            self.echo_retries += 1
            options.append((oscore.ECHO, echo))
            answer = self.exchange(coap.Message(coap.CON, code, 0, b"", options, payload))
        return [coap.code_str(answer.code), answer.payload.decode()]


def ask(port, seqfile):
    client = Client(port, seqfile)
    results = [
        client.request(coap.POST, "echo", b"board to master"),
        client.request(coap.GET, "hello", query=("a=1", "b=2")),
        client.request(coap.POST, "echo", b"again"),
    ]
    print(json.dumps({"results": results, "echo_retries": client.echo_retries, "seq": client.ctx.seq}))


if sys.argv[1] == "server":
    serve(int(sys.argv[2]), sys.argv[3])
else:
    ask(int(sys.argv[2]), sys.argv[3])
