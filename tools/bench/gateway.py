"""How fast the master's gateway takes what boards send by themselves — registrations, registration updates
(heartbeats) and telemetry, each parsed, checked and stored — against aiocoap's bare server answering the same
datagrams without work, in the same run.

The boards are a load generator speaking the agent's protocol with real OSCORE contexts: --boards identities are
written to a fresh database the way flashing writes them (storage.devices.record_identity: a secret and an OSCORE
id each), and the master side learns their keys the way `pifleet serve` does at start (PairingService.restore).
Every request is protected beforehand with the board's context (aiocoap's OSCORE, as tests/support/oscore.py),
so the generator only sends prepared datagrams from one UDP socket per board and matches the answers by token:
the server, not the generator, is what runs out of time. Each board keeps --inflight requests outstanding (a
request not answered within 2 s is sent again, as CoAP retransmits). The master side answers its own GET /cap
to every board that registers, as a board would.

Two servers, each in a process of its own (the generator is this process; PostgreSQL is a third):
- master: the master's ingest path as `pifleet serve` assembles it — pifleet.gateway.coap.Gateway (OSCORE site
  wrapper, resources /rd, /rd/ID, /t) over devices.registry.Registry and the storage behind it, on PostgreSQL
  (embedded, or DATABASE_URL);
- echo: aiocoap's OscoreSiteWrapper over the same board contexts and a Site whose /rd, /rd/ID and /t answer at
  once (2.01, 2.04, 2.04) without looking at the request: unprotect, answer, protect — aiocoap alone.

Phases: every board registers --registrations times (registrations_per_s; the last registration's id is the one
the updates use), then --rounds rounds of --messages requests per board, every --update-every-th a registration
update (POST /rd/ID), the rest telemetry (POST /t?ep=ID, JSON {"cap", "values"} with --values numbers); each round
goes to the echo server first, then to the master (the same datagrams, alternating, so both see the same load on
the machine). After the rounds the answers are unprotected (inner codes: every one must be 2.04) and the master's
stored readings counted: telemetry x values rows must be there.

    python tools/bench/gateway.py [--boards 50] [--messages 400] [--rounds 3] [--inflight 1] [--values 2]
                                  [--update-every 10] [--registrations 2] [--profile FILE]

--profile runs the master's process under cProfile and prints where its time went (top functions by own time);
the profiler slows that process several times over, so rates and CPU figures compare only between runs without it.
Last line: telemetry_per_s=… echo_per_s=… ratio_vs_echo=… p99_ingest_ms=… and more name=value figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiocoap
from aiocoap import oscore
from aiocoap.numbers.codes import Code

from pifleet.runtime import free_udp_port

SALT = b"pifleet-oscore-1"  # docs/security.md: the master salt of every pifleet context
LINKS = b'</cap>;ct=50,</stats>;ct=50,</a/climate/read>;rt="pifleet.cmd";ct=50'
CAPS = {"name": "climate", "version": "1", "commands": {"read": {}}}
RETRANSMIT_S = 2.0
STALL_S = 60.0
CON, ACK, RST = 0, 2, 3


class Board(oscore.CanProtect, oscore.CanUnprotect, oscore.SecurityContextUtils):
    """A board's side of its OSCORE context (sender id = its OSCORE id, recipient id b"", the master's)."""

    def __init__(self, device_id: str, secret: bytes, oscore_id: bytes) -> None:
        self.device_id = device_id
        self.secret, self.oscore_id = secret, oscore_id
        self.alg_aead = oscore.algorithms["AES-CCM-16-64-128"]
        self.hashfun = oscore.hashfunctions["sha256"]
        self.sender_id, self.recipient_id, self.id_context = oscore_id, b"", None
        self.sender_sequence_number = 0
        self.recipient_replay_window = oscore.ReplayWindow(32, lambda: None)
        self.recipient_replay_window.initialize_empty()
        self.echo_recovery = None
        self.derive_keys(SALT, secret)
        self.mid = 0
        self.location: str | None = None  # the registration id the master gave
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    def post_seqnoincrease(self) -> None:
        """Nothing to keep."""

    def datagram(self, code, path: tuple[str, ...], query: tuple[str, ...] = (), payload=b"", ct=None) -> Prepared:
        """The request protected with the next sequence number, as the bytes to send."""
        plain = aiocoap.Message(code=code, payload=payload, content_format=ct)
        plain.opt.uri_path, plain.opt.uri_query = path, query
        protected, request_id = self.protect(plain)
        self.mid = (self.mid + 1) & 0xFFFF
        protected.mtype, protected.mid = aiocoap.CON, self.mid
        protected.token = self.mid.to_bytes(2, "big")
        return Prepared(self, protected.encode(), protected.token, request_id)


@dataclass(slots=True)
class Prepared:
    board: Board
    data: bytes
    token: bytes
    request_id: object
    kind: str = "telemetry"
    sent: float = 0.0
    answered: float = 0.0
    retransmits: int = 0
    answer: bytes = b""


@dataclass
class Outcome:
    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=dict)
    codes: dict[str, dict[str, int]] = field(default_factory=dict)
    retransmits: int = 0
    unanswered: int = 0
    cpu_s: float = 0.0  # the server process's CPU time over the load
    pg_cpu_s: float = 0.0  # PostgreSQL's (all its processes) over the load


class Generator(asyncio.DatagramProtocol):
    """One board's socket: answers matched by token; the master's GET /cap answered as a board would."""

    def __init__(self, board: Board, load: Load) -> None:
        self.board, self.load = board, load
        self.served: dict[int, bytes] = {}  # message id of a request from the master -> our answer

    def connection_made(self, transport) -> None:
        self.board.transport = transport
        self.board.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr) -> None:
        if len(data) < 4:
            return
        mtype, code = (data[0] >> 4) & 3, data[1]
        if 1 <= code < 32:  # a request: the master reads the board's capabilities after it registered
            self._serve(data, addr)
            return
        if mtype == CON:  # a separate response (the answer took longer than aiocoap's empty-ACK delay): ACK it
            self.board.transport.sendto(bytes([0x60, 0, data[2], data[3]]), addr)
        if addr[:2] != self.load.server:
            return  # a late answer of the other server (the same datagrams went there before): not this run's
        if code == 0:
            if mtype == ACK:  # the empty ACK of a separate response: the answer follows, no retransmission
                self.load.acknowledged(self.board, data[2:4])
            return
        tkl = data[0] & 0x0F
        self.load.answered(self.board, data[4 : 4 + tkl], data)

    def _serve(self, data: bytes, addr) -> None:
        request = aiocoap.Message.decode(data)
        if (answer := self.served.get(request.mid)) is not None:  # the master retransmitted: the same answer again
            self.board.transport.sendto(answer, addr)
            return
        inner, request_id = self.board.unprotect(request)
        body = {"device": self.board.device_id, "role": None, "caps": [CAPS], "failed": []}
        answer = aiocoap.Message(code=Code.CONTENT, payload=json.dumps(body).encode(), content_format=50)
        if inner.opt.uri_path != ("cap",):
            answer = aiocoap.Message(code=Code.NOT_FOUND)
        protected, _ = self.board.protect(answer, request_id)
        protected.mtype, protected.mid, protected.token = aiocoap.ACK, request.mid, request.token
        self.served[request.mid] = data = protected.encode()
        self.board.transport.sendto(data, addr)


class Load:
    """Sends prepared datagrams to a server, --inflight per board outstanding, until every one is answered."""

    def __init__(self, inflight: int) -> None:
        self.inflight = inflight
        self.server: tuple[str, int] = ("127.0.0.1", 0)
        self.queues: dict[Board, list[Prepared]] = {}
        self.pending: dict[tuple[Board, bytes], Prepared] = {}
        self.left = 0
        self.done: asyncio.Event = asyncio.Event()
        self.progress = 0.0

    async def run(self, server: tuple[str, int], streams: dict[Board, list[Prepared]]) -> Outcome:
        self.server = server
        self.queues = {b: list(reversed(s)) for b, s in streams.items()}  # popped from the end
        self.left = sum(len(s) for s in streams.values())
        self.done = asyncio.Event()
        sent: list[Prepared] = [p for s in streams.values() for p in s]
        start = self.progress = time.perf_counter()
        for board in streams:
            for _ in range(self.inflight):
                self._next(board)
        retransmits = 0
        while not self.done.is_set():
            try:
                await asyncio.wait_for(self.done.wait(), 0.25)
            except TimeoutError:
                pass
            now = time.perf_counter()
            if now - self.progress > STALL_S:
                break
            for p in list(self.pending.values()):
                if p.retransmits < 4 and now - p.sent > RETRANSMIT_S * (1 << p.retransmits):
                    p.retransmits += 1
                    retransmits += 1
                    p.board.transport.sendto(p.data, self.server)
        seconds = time.perf_counter() - start
        outcome = Outcome(seconds, retransmits=retransmits, unanswered=len(self.pending))
        self.pending.clear()
        for p in sent:
            if p.answered:
                outcome.latencies.setdefault(p.kind, []).append((p.answered - p.sent) * 1000)
        return outcome

    def _next(self, board: Board) -> None:
        queue = self.queues[board]
        if not queue:
            return
        p = queue.pop()
        p.sent, p.answered, p.retransmits, p.answer = time.perf_counter(), 0.0, 0, b""
        self.pending[(board, p.token)] = p
        board.transport.sendto(p.data, self.server)

    def acknowledged(self, board: Board, mid: bytes) -> None:
        p = self.pending.get((board, mid))  # the token is the message id
        if p is not None:
            p.retransmits = 99  # acknowledged: the server answers by itself when it is done

    def answered(self, board: Board, token: bytes, data: bytes) -> None:
        p = self.pending.pop((board, token), None)
        if p is None:
            return  # a duplicate answer to a retransmission
        p.answered = self.progress = time.perf_counter()
        p.answer = data
        self.left -= 1
        if self.left == 0:
            self.done.set()
        self._next(board)


def inner_codes(prepared: list[Prepared], codes: dict[str, dict[str, int]]) -> None:
    """Unprotect every answer (after the timing): the code the resource gave, hidden by OSCORE's outer 2.04."""
    for p in prepared:
        if not p.answer:
            name = "none"
        else:
            message = aiocoap.Message.decode(p.answer)
            if message.opt.oscore is None:
                name = str(message.code)  # refused by the OSCORE layer itself
            else:
                inner, _ = p.board.unprotect(message, p.request_id)
                name = str(inner.code)
                if p.kind == "register" and inner.code == Code.CREATED:
                    p.board.location = inner.opt.location_path[-1]
        codes.setdefault(p.kind, {}).setdefault(name, 0)
        codes[p.kind][name] += 1


# -- the servers, each in a process of its own ----------------------------------------------------------------------


def serve(mode: str, port: int, url: str, keys_dir: str, conn, profile: str | None) -> None:
    """Child process: run the master's ingest path or the bare echo on `port` until told to stop."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU time: on a busy machine, waits are not work
    asyncio.run(_serve(mode, port, url, Path(keys_dir), conn, profiler))
    if profiler is not None:
        profiler.dump_stats(profile)


async def _serve(mode: str, port: int, url: str, keys_dir: Path, conn, profiler) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_reader(conn.fileno(), lambda: (conn.recv(), stop.set()))
    if mode == "echo":
        context = await _echo(port, url, keys_dir)
        conn.send("ready")
        if profiler is not None:
            profiler.enable()
        await stop.wait()
        await context.shutdown()
        conn.send({})
        return

    from pifleet.devices.pairing import PairingService
    from pifleet.devices.registry import Registry
    from pifleet.events import EventHub
    from pifleet.gateway.coap import Gateway
    from pifleet.storage import postgres

    pool = await postgres.create_pool(url)
    hub = EventHub()
    gateway = Gateway("127.0.0.1", port, keys_dir=keys_dir)
    registry = Registry(pool, hub, gateway)
    await gateway.start(registry)
    await PairingService(pool, hub, keys=gateway).restore()
    conn.send("ready")
    if profiler is not None:
        profiler.enable()
    await stop.wait()
    if profiler is not None:
        profiler.disable()
    await gateway.stop()
    if close := getattr(registry, "close", None):
        await close()  # what is still buffered is written before the pool closes
    while pending := [t for t in registry._tasks if not t.done()]:
        await asyncio.gather(*pending, return_exceptions=True)
    await pool.close()
    conn.send(dict(gateway.counters))


async def _echo(port: int, url: str, keys_dir: Path) -> aiocoap.Context:
    """aiocoap's server with the boards' contexts, answering at once: the baseline."""
    import aiocoap.resource as resource
    from aiocoap.credentials import CredentialsMap
    from aiocoap.oscore_sitewrapper import OscoreSiteWrapper

    from pifleet.gateway.oscore import BoardContext
    from pifleet.storage import devices as q
    from pifleet.storage import postgres

    pool = await postgres.create_pool(url)
    credentials = CredentialsMap()
    for row in await q.paired_boards(pool):
        credentials[":" + row["id"]] = BoardContext(row["id"], row["oscore_id"], row["secret"], keys_dir)
    await pool.close()

    class Answer(resource.Resource):
        def __init__(self, code, location=()) -> None:
            super().__init__()
            self.code, self.location = code, location

        async def render_post(self, request):
            return aiocoap.Message(code=self.code, location_path=self.location)

    class Under(Answer, resource.PathCapable):
        pass

    site = resource.Site()
    site.add_resource(("rd",), Answer(Code.CREATED, ("rd", "echo")))
    site.add_resource(("rd",), Under(Code.CHANGED))
    site.add_resource(("t",), Answer(Code.CHANGED))
    return await aiocoap.Context.create_server_context(
        OscoreSiteWrapper(site, credentials), bind=("127.0.0.1", port), transports=["oscore", "udp6"]
    )


class Server:
    """A server process (master or echo) on its own port."""

    def __init__(self, mode: str, url: str, keys_dir: Path, profile: str | None = None) -> None:
        self.mode = mode
        self.port = free_udp_port()
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=serve, args=(mode, self.port, url, str(keys_dir), child, profile), name=f"bench-{mode}"
        )
        self.counters: dict = {}

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    async def start(self) -> None:
        self.process.start()
        ready = await asyncio.to_thread(self.conn.recv)
        assert ready == "ready", ready

    async def stop(self) -> None:
        self.conn.send("stop")
        self.counters = await asyncio.to_thread(self.conn.recv)
        await asyncio.to_thread(self.process.join, 60)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far; 0 for one that is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree(root: int | None) -> list[int]:
    """The process and all its descendants (PostgreSQL: the postmaster, its backends and helpers)."""
    if root is None:
        return []
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


class Cpu:
    """CPU seconds of a server process and of PostgreSQL over one load."""

    def __init__(self, server: Server, pg: int | None) -> None:
        self.server, self.pg = server, pg
        self.before = self._now()

    def _now(self) -> tuple[float, dict[int, float]]:
        return cpu_seconds(self.server.process.pid), {p: cpu_seconds(p) for p in tree(self.pg)}

    def used(self) -> tuple[float, float]:
        (server, pg), (server0, pg0) = self._now(), self.before
        return server - server0, sum(t - pg0.get(p, 0.0) for p, t in pg.items())


# -- the run ----------------------------------------------------------------------------------------------------------


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))] if ordered else 0.0


async def make_boards(url: str, count: int) -> list[Board]:
    """`count` identities written as flashing writes them; returns the boards' sides of their contexts."""
    from pifleet.storage import devices as q
    from pifleet.storage import migrations, postgres

    await postgres.ensure_database(url)
    pool = await postgres.create_pool(url)
    boards = []
    try:
        await migrations.migrate(pool)
        async with pool.acquire() as conn:
            for n in range(count):
                device_id, secret = f"gw{n:04d}{uuid.uuid4().hex[:6]}", secrets.token_bytes(32)
                oscore_id = await q.next_oscore_id(conn)
                mac = "02:%02x:%02x:%02x:%02x:%02x" % (n >> 8, n & 0xFF, *secrets.token_bytes(3))
                await q.record_identity(
                    conn, device_id=device_id, name=device_id, role=None, mac=mac, secret=secret, oscore_id=oscore_id
                )
                boards.append(Board(device_id, secret, oscore_id))
    finally:
        await pool.close()
    return boards


def stream(board: Board, messages: int, update_every: int, values: int) -> list[Prepared]:
    out = []
    for n in range(messages):
        if update_every and n % update_every == update_every - 1:
            p = board.datagram(Code.POST, ("rd", board.location or "none"))
            p.kind = "update"
        else:
            reading = {f"v{i}": round(20 + (n % 100) / 10 + i, 2) for i in range(values)}
            body = json.dumps({"cap": "climate", "values": reading}).encode()
            p = board.datagram(Code.POST, ("t",), ("ep=" + board.device_id,), body, 50)
        out.append(p)
    return out


def registrations(board: Board) -> Prepared:
    query = ("ep=" + board.device_id, "lt=300", "et=pifleet.esp32", "name=" + board.device_id, "mpy=6", "fw=1.24.1")
    p = board.datagram(Code.POST, ("rd",), query + ("agent=bench",), LINKS, 40)
    p.kind = "register"
    return p


async def stored_rows(url: str) -> int:
    from pifleet.storage import postgres

    pool = await postgres.create_pool(url)
    try:
        return await pool.fetchval("select count(*) from readings")
    finally:
        await pool.close()


async def bench(url: str, tmp: Path, args, pg: int | None) -> str:
    total_per_board = args.registrations + args.rounds * args.messages
    if total_per_board >= 60000:
        raise SystemExit("--registrations + --rounds x --messages must stay under 60000 (16-bit message ids)")
    boards = await make_boards(url, args.boards)
    loop = asyncio.get_running_loop()
    load = Load(args.inflight)
    for board in boards:
        await loop.create_datagram_endpoint(lambda b=board: Generator(b, load), local_addr=("127.0.0.1", 0))
    echo = Server("echo", url, tmp / "echo-keys")
    master = Server("master", url, tmp / "master-keys", args.profile)
    await asyncio.gather(echo.start(), master.start())
    try:
        runs: dict[str, list[Outcome]] = {"echo": [], "master": []}
        # registrations: the same datagrams to both, one registration per board at a time
        regs = {"echo": Outcome(0.0), "master": Outcome(0.0)}
        for _ in range(args.registrations):
            batch = {b: [registrations(b)] for b in boards}
            for name, server in (("echo", echo), ("master", master)):
                outcome = await load.run(server.address, batch)
                regs[name].seconds += outcome.seconds
                regs[name].retransmits += outcome.retransmits
                regs[name].unanswered += outcome.unanswered
                for kind, xs in outcome.latencies.items():
                    regs[name].latencies.setdefault(kind, []).extend(xs)
                if name == "master":
                    inner_codes([p for s in batch.values() for p in s], regs["master"].codes)
        print(f"registrations: {regs['master'].codes.get('register')}", flush=True)
        prepared: list[Prepared] = []
        for r in range(args.rounds):
            t = time.perf_counter()
            streams = {b: stream(b, args.messages, args.update_every, args.values) for b in boards}
            prepare_s = time.perf_counter() - t
            for name, server in (("echo", echo), ("master", master)):
                cpu = Cpu(server, pg)
                outcome = await load.run(server.address, streams)
                outcome.cpu_s, outcome.pg_cpu_s = cpu.used()
                if name == "master":
                    inner_codes([p for s in streams.values() for p in s], outcome.codes)
                    prepared.extend(p for s in streams.values() for p in s)
                runs[name].append(outcome)
                n = sum(len(x) for x in outcome.latencies.values())
                print(
                    f"round {r + 1} {name:>6}: {n} answers in {outcome.seconds:.2f} s ({n / outcome.seconds:.0f}/s), "
                    f"p99 {p99(outcome.latencies.get('telemetry', [])):.1f} ms, retransmits {outcome.retransmits}, "
                    f"unanswered {outcome.unanswered}; CPU {outcome.cpu_s * 1000 / n:.2f} ms/request, "
                    f"PostgreSQL {outcome.pg_cpu_s * 1000 / n:.2f} ms/request (prepared in {prepare_s:.1f} s)",
                    flush=True,
                )
    finally:
        await asyncio.gather(echo.stop(), master.stop())
    for board in boards:
        board.transport.close()

    rows = await stored_rows(url)
    codes: dict[str, dict[str, int]] = {}
    for outcome in runs["master"]:
        for kind, by in outcome.codes.items():
            for code, n in by.items():
                codes.setdefault(kind, {}).setdefault(code, 0)
                codes[kind][code] += n
    print(f"master answers: {codes}; counters {master.counters}", flush=True)
    telemetry_ok = codes.get("telemetry", {}).get(str(Code.CHANGED), 0)
    updates_ok = codes.get("update", {}).get(str(Code.CHANGED), 0)
    telemetry_sent = sum(1 for p in prepared if p.kind == "telemetry")
    expected_rows = telemetry_ok * args.values
    print(f"readings stored: {rows} (expected {expected_rows}: {telemetry_ok} telemetry x {args.values})", flush=True)

    def rate(name: str, kind: str) -> float:
        count = sum(len(o.latencies.get(kind, [])) for o in runs[name])
        return count / sum(o.seconds for o in runs[name])

    def cpu_ms(name: str, what: str) -> float:
        """CPU milliseconds per request (telemetry and updates alike) over the rounds."""
        count = sum(len(x) for o in runs[name] for x in o.latencies.values())
        return round(sum(getattr(o, what) for o in runs[name]) * 1000 / count, 3)

    telemetry_per_s = rate("master", "telemetry")
    echo_per_s = rate("echo", "telemetry")
    lat = {name: [x for o in runs[name] for x in o.latencies.get("telemetry", [])] for name in runs}
    upd = [x for o in runs["master"] for x in o.latencies.get("update", [])]
    reg_lat = regs["master"].latencies.get("register", [])
    if args.profile:
        import pstats

        print(f"\nwhere the master's process spent its time (cProfile, {args.profile}):")
        pstats.Stats(args.profile).sort_stats("tottime").print_stats(25)
    figures = {
        "telemetry_per_s": round(telemetry_per_s),
        "echo_per_s": round(echo_per_s),
        "ratio_vs_echo": round(telemetry_per_s / echo_per_s, 2),
        "p99_ingest_ms": round(p99(lat["master"]), 1),
        "median_ingest_ms": round(statistics.median(lat["master"]), 1),
        "echo_p99_ms": round(p99(lat["echo"]), 1),
        "updates_per_s": round(rate("master", "update")),
        "p99_update_ms": round(p99(upd), 1),
        "registrations_per_s": round(len(reg_lat) / regs["master"].seconds),
        "echo_registrations_per_s": round(len(regs["echo"].latencies.get("register", [])) / regs["echo"].seconds),
        "p99_register_ms": round(p99(reg_lat), 1),
        "master_cpu_ms": cpu_ms("master", "cpu_s"),
        "pg_cpu_ms": cpu_ms("master", "pg_cpu_s"),
        "echo_cpu_ms": cpu_ms("echo", "cpu_s"),
        "boards": args.boards,
        "inflight": args.boards * args.inflight,
        "telemetry_sent": telemetry_sent,
        "telemetry_ok": telemetry_ok,
        "updates_ok": updates_ok,
        "rows_stored": rows,
        "rows_expected": expected_rows,
        "retransmits": sum(o.retransmits for o in runs["master"]),
    }
    return " ".join(f"{k}={v}" for k, v in figures.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=50)
    parser.add_argument("--messages", type=int, default=400, help="requests per board per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--inflight", type=int, default=1, help="requests each board keeps outstanding (agent: 1)")
    parser.add_argument("--values", type=int, default=2, help="numbers per telemetry (rows it stores)")
    parser.add_argument("--update-every", type=int, default=10, help="every Nth request a registration update")
    parser.add_argument("--registrations", type=int, default=2, help="registrations per board before the rounds")
    parser.add_argument("--profile", help="run the master's process under cProfile, stats to this file")
    args = parser.parse_args()
    server = None
    with tempfile.TemporaryDirectory(prefix="pifleet-bench-gateway-") as tmp:
        if base := os.environ.get("DATABASE_URL"):
            from pifleet.storage.postgres import with_database

            url = with_database(base, f"bench_gateway_{uuid.uuid4().hex[:8]}")
        else:
            from pifleet.storage import postgres

            server = postgres.start_embedded(Path(tmp) / "pg")
            url = postgres.embedded_url(server, "bench_gateway")
        try:
            pg = int((Path(tmp) / "pg" / "postmaster.pid").read_text().split()[0]) if server is not None else None
            line = asyncio.run(bench(url, Path(tmp), args, pg))
        finally:
            if server is not None:
                server.cleanup()
    print(line)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
