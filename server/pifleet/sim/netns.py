"""Virtual boards behind a real, lossy network: a network namespace per board, linked to the host by a veth pair,
with `tc netem` on the link (loss, delay with jitter, reordering, duplication).

Layer: sim (CPython). It drives iproute2 (`ip`, `tc`) and needs CAP_NET_ADMIN (root); `unavailable()` says why
it cannot run here, and nothing else in pifleet depends on it. It must not import litestar or aiocoap.

The picture (docs/agent.md, "A board behind a lossy link"):

    host:  bridge pfbrN  10.231.N.1/24   <- the master's CoAP endpoint binds this address
             |-- pfvNxK (veth, netem on egress: master -> board)
    netns: eth0  10.231.N.K/24           <- the board's agent binds this address (PIFLEET_SIM_IP)
             (netem on egress: board -> master)

10.231.0.0/16 is private (RFC 1918) and used only between the namespaces and the host's bridge, one /24 per
`Lan` (N is claimed by creating the bridge: `ip link add` is atomic, so two processes never share a LAN; a LAN
left behind by a killed process is taken over). Traffic keeps the namespaces' addresses: no NAT, no proxy.
The same netem line is applied in both directions, so `loss 30%` loses 30 % of the datagrams each way.

Where the kernel has no sch_netem (some VMs), the same line is applied in user space (sim/impair.py): the host's
end of the veth pair leaves the bridge, a second pair takes its place there, and a thread of this process carries
the frames between the two, impaired (loss, delay with jitter, reordering, duplication), and says so:

             |-- pfbNxK (veth) == pfrNxK  <- relay thread ->  pfvNxK (veth) == eth0 in the namespace
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import subprocess

from pifleet.runtime import pid_alive
from pifleet.sim.impair import Impairment, Relay, UnsupportedImpairment

log = logging.getLogger(__name__)

NET = "10.231"  # 10.231.N.0/24 per Lan (RFC 1918, private)
_BRIDGE = "pfbr{}"
_ALIAS = "pifleet-sim pid {}"
_ALIAS_PID = re.compile(r"pifleet-sim pid (\d+)")
_OWN_NS = re.compile(r"pf(\d+)n\d+$")  # namespaces a Lan names itself (the pid of the process that made them)

# netem's words this module accepts, each with how many values may follow it (iproute2's tc-netem(8))
_NETEM_WORDS = {"loss": 2, "delay": 3, "reorder": 2, "duplicate": 2, "corrupt": 2, "rate": 1, "limit": 1}
_NETEM_VALUE = re.compile(r"^(\d+(\.\d+)?(%|ms|us|s|bit|kbit|mbit)?|distribution|normal|pareto|paretonormal)$")


class NetnsError(RuntimeError):
    """A namespace or its link could not be set up (the message names the command and what it said)."""


class NetemError(NetnsError):
    """The link cannot be impaired as asked (no sch_netem in this kernel, or a netem line tc refuses)."""


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise NetnsError(f"`{shlex.join(argv)}` failed: {done.stderr.strip() or done.returncode}")
    return done


def unavailable() -> str | None:
    """Why boards cannot get namespaces here (None: they can): no iproute2, or no CAP_NET_ADMIN."""
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` (iproute2) is not installed"
    probe = f"pf{os.getpid()}probe"
    done = _run("ip", "netns", "add", probe, check=False)
    if done.returncode != 0:
        return f"cannot create a network namespace (`ip netns add`: {done.stderr.strip()}); needs CAP_NET_ADMIN (root)"
    _run("ip", "netns", "del", probe, check=False)
    return None


def parse_netem(spec: str) -> list[str]:
    """A netem line ("loss 20% delay 40ms 30ms reorder 5% duplicate 1%") as tc's arguments; ValueError naming the
    word it does not take."""
    words = spec.split()
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word not in _NETEM_WORDS:
            raise ValueError(f"netem: unknown word {word!r} (known: {', '.join(_NETEM_WORDS)})")
        values = []
        i += 1
        while i < len(words) and words[i] not in _NETEM_WORDS and len(values) < _NETEM_WORDS[word]:
            if not _NETEM_VALUE.match(words[i]):
                raise ValueError(f"netem: {word}: not a value: {words[i]!r}")
            values.append(words[i])
            i += 1
        if not values:
            raise ValueError(f"netem: {word} needs a value")
        out += [word, *values]
    return out


def _alias(ifname: str) -> str | None:
    done = _run("ip", "-j", "link", "show", "dev", ifname, check=False)
    if done.returncode != 0:
        return None
    info = json.loads(done.stdout or "[]")
    return (info[0].get("ifalias") or "") if info else None


def sweep() -> list[str]:
    """Remove what killed processes left: their LANs' bridges and the namespaces a Lan named for them."""
    removed = []
    for line in _run("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        found = _OWN_NS.match(name)
        if found and not pid_alive(int(found.group(1))):
            _run("ip", "netns", "del", name, check=False)
            removed.append(name)
    done = _run("ip", "-j", "link", "show", "type", "bridge", check=False)
    for info in json.loads(done.stdout or "[]") if done.returncode == 0 else []:
        found = _ALIAS_PID.match(info.get("ifalias") or "")
        if found and not pid_alive(int(found.group(1))):
            _run("ip", "link", "del", info["ifname"], check=False)
            removed.append(info["ifname"])
    return removed


class Lan:
    """A bridge on the host with its own private /24; each board's namespace hangs on it by a veth pair.

    The master's CoAP endpoint listens on `host_ip` (`pifleet serve --coap-host HOST_IP`, or 0.0.0.0)."""

    def __init__(self) -> None:
        problem = unavailable()
        if problem:
            raise NetnsError(problem)
        sweep()
        self.index = self._claim()
        self.bridge = _BRIDGE.format(self.index)
        self.host_ip = f"{NET}.{self.index}.1"
        self.links: dict[str, Link] = {}
        self._next = 2
        self._relay: Relay | None = None  # netem in user space, made for the first link that needs it
        _run("ip", "addr", "add", f"{self.host_ip}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        log.info("LAN %s: %s/24 on the host", self.bridge, self.host_ip)

    @staticmethod
    def _claim() -> int:
        for index in range(1, 255):
            bridge = _BRIDGE.format(index)
            if _run("ip", "link", "add", bridge, "type", "bridge", check=False).returncode == 0:
                _run("ip", "link", "set", bridge, "alias", _ALIAS.format(os.getpid()))
                return index
        raise NetnsError(f"no free LAN: bridges pfbr1 … pfbr254 all exist ({NET}.0.0/16 is taken)")

    def relay(self) -> Relay:
        """The thread that impairs this LAN's links where the kernel has no sch_netem."""
        if self._relay is None:
            self._relay = Relay()
        return self._relay

    def add(self, name: str | None = None, netem: str | None = None) -> Link:
        """A namespace (NAME, or one named for this process) on this LAN, with its address; netem if given."""
        if self._next > 254:
            raise NetnsError(f"LAN {self.bridge} is full (253 boards)")
        number, self._next = self._next, self._next + 1
        link = Link(name or f"pf{os.getpid()}n{number}", self, number)
        self.links[link.name] = link
        if netem:
            link.impair(netem)
        return link

    def close(self) -> None:
        for link in list(self.links.values()):
            link.close()
        if self._relay is not None:
            self._relay.close()
        _run("ip", "link", "del", self.bridge, check=False)

    def __enter__(self) -> Lan:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Link:
    """One namespace and its veth pair to the LAN's bridge: `ip` is the board's address, `host_ip` the master's."""

    def __init__(self, name: str, lan: Lan, number: int) -> None:
        self.name = name
        self.lan = lan
        self.ip = f"{NET}.{lan.index}.{number}"
        self.host_ip = lan.host_ip
        self.host_if = f"pfv{lan.index}x{number}"
        self.relay_if = f"pfr{lan.index}x{number}"  # netem in user space: the relay's end of the bridge's pair
        self.bridge_if = f"pfb{lan.index}x{number}"
        self.relayed = False
        self.impairment = "none"  # what impair() applied, in words
        if _run("ip", "netns", "add", name, check=False).returncode != 0:
            raise NetnsError(f"network namespace {name!r} exists already (remove it: ip netns del {name})")
        try:
            peer = f"pfp{lan.index}x{number}"
            _run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", peer)
            _run("ip", "link", "set", peer, "netns", name)
            _run("ip", "-n", name, "link", "set", peer, "name", "eth0")
            _run("ip", "-n", name, "addr", "add", f"{self.ip}/24", "dev", "eth0")
            _run("ip", "-n", name, "link", "set", "eth0", "up")
            _run("ip", "-n", name, "link", "set", "lo", "up")
            _run("ip", "link", "set", self.host_if, "master", lan.bridge)
            _run("ip", "link", "set", self.host_if, "up")
        except NetnsError:
            self.close()
            raise

    def exec_prefix(self) -> list[str]:
        """What runs a program inside the namespace (ip netns exec execs it: the pid stays the program's)."""
        return ["ip", "netns", "exec", self.name]

    def impair(self, spec: str) -> str:
        """tc netem with `spec` on both ends of the link (each direction), or the same in user space where the kernel
        has no sch_netem (see the module's docstring); returns what was applied, in words. NetemError when neither
        can apply it."""
        args = parse_netem(spec)
        self.clear()
        host = _run("tc", "qdisc", "replace", "dev", self.host_if, "root", "netem", *args, check=False)
        if host.returncode == 0:
            _run("tc", "-n", self.name, "qdisc", "replace", "dev", "eth0", "root", "netem", *args)
            self.impairment = f"netem {' '.join(args)} (each direction)"
            return self.impairment
        if "unknown" not in host.stderr:
            raise NetemError(f"netem {' '.join(args)} on {self.host_if}: {host.stderr.strip()}")
        try:
            impairment = Impairment.from_args(args)
        except UnsupportedImpairment as exc:
            raise NetemError(f"this kernel has no sch_netem, and {exc}") from exc
        _run("ip", "link", "add", self.relay_if, "type", "veth", "peer", "name", self.bridge_if)
        self.relayed = True
        _run("ip", "link", "set", self.host_if, "nomaster")
        _run("ip", "link", "set", self.bridge_if, "master", self.lan.bridge)
        for dev in (self.relay_if, self.bridge_if):
            _run("ip", "link", "set", dev, "up")
        self.lan.relay().add(self.host_if, self.relay_if, impairment)
        self.impairment = f"{impairment.words()} each direction, in user space (this kernel has no sch_netem)"
        log.info("namespace %s: %s", self.name, self.impairment)  # the callers say it (CLI, tests, chaos.py)
        return self.impairment

    def clear(self) -> None:
        """No impairment: the link as it is."""
        for prefix, dev in ((["tc"], self.host_if), (["tc", "-n", self.name], "eth0")):
            _run(*prefix, "qdisc", "del", "dev", dev, "root", check=False)
        if self.relayed:
            self.lan.relay().remove(self.host_if, self.relay_if)
            _run("ip", "link", "del", self.relay_if, check=False)  # its peer on the bridge goes with it
            _run("ip", "link", "set", self.host_if, "master", self.lan.bridge, check=False)
            self.relayed = False
        self.impairment = "none"

    def close(self) -> None:
        """Remove the namespace (its end of the veth pair goes with it, and so does the host's)."""
        if self.relayed:
            self.lan.relay().remove(self.host_if, self.relay_if)
            _run("ip", "link", "del", self.relay_if, check=False)
        _run("ip", "netns", "del", self.name, check=False)
        _run("ip", "link", "del", self.host_if, check=False)
        self.lan.links.pop(self.name, None)

    def __repr__(self) -> str:
        return f"<Link {self.name} {self.ip} via {self.host_if} ({self.impairment})>"
