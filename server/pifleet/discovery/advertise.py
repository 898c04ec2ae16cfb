"""Advertising the master's CoAP endpoint by mDNS / DNS-SD (RFC 6762, RFC 6763), with python-zeroconf.

Layer: adapter (like the gateway). What is advertised:

    PTR  _coap._udp.local.                  -> pifleet-HOST._coap._udp.local.
    SRV  pifleet-HOST._coap._udp.local.     -> 0 0 COAP_PORT HOST.local.
    TXT  pifleet-HOST._coap._udp.local.     "rt=core.rd" "path=/rd" "ep=pifleet"
    A    HOST.local.                        -> the addresses boards reach the CoAP endpoint on

`_coap._udp` is CoAP's registered DNS-SD service name (RFC 7252 §12.8); `rt=core.rd` mirrors the resource type
of a CoRE Resource Directory's registration interface (RFC 9176 §9.3), which is how a board tells the master from
any other CoAP server on the LAN, and `path` names the registration resource (RFC 6763 §6 keys are short,
case-insensitive). The agent's side is micropython/agent/mdns.py.

Advertising is best effort: an interface without multicast (loopback, by default) logs one WARNING and the master
runs on — boards then use the address in their config. It never delays the master's start: the probing and
announcing (~1 s, RFC 6762 §8) run in a task kept here.
"""

from __future__ import annotations

import asyncio
import logging
import socket

log = logging.getLogger(__name__)

SERVICE_TYPE = "_coap._udp.local."
WILDCARDS = ("0.0.0.0", "", "::")


def _ipv4_addresses() -> list[str]:
    """Every IPv4 address of this host except loopback (for a master bound to the wildcard address)."""
    import ifaddr  # a dependency of python-zeroconf

    out = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ip.ip.startswith("127."):
                out.append(ip.ip)
    return out or ["127.0.0.1"]


def _label(text: str) -> str:
    return "".join(c if c.isalnum() or c == "-" else "-" for c in text)[:40].strip("-") or "pi"


class Advertiser:
    """One DNS-SD service instance for the master's CoAP endpoint, on the interfaces of its bind address."""

    def __init__(self, coap_host: str, coap_port: int, *, hostname: str | None = None) -> None:
        self.coap_host, self.coap_port = coap_host, coap_port
        self.hostname = _label(hostname or socket.gethostname())
        self.instance = f"pifleet-{self.hostname}"
        self._zc = None
        self._info = None
        self._task: asyncio.Task | None = None

    @property
    def addresses(self) -> list[str]:
        return _ipv4_addresses() if self.coap_host in WILDCARDS else [self.coap_host]

    async def start(self) -> None:
        from zeroconf import IPVersion
        from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

        addresses = self.addresses
        self._info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{self.instance}.{SERVICE_TYPE}",
            port=self.coap_port,
            addresses=[socket.inet_aton(a) for a in addresses],
            server=f"{self.hostname}.local.",
            properties={"rt": "core.rd", "path": "/rd", "ep": "pifleet"},
        )
        try:
            self._zc = AsyncZeroconf(interfaces=addresses, ip_version=IPVersion.V4Only)
        except OSError as exc:
            log.warning(
                "mDNS: cannot advertise on %s (%s); boards use the address in their config", ", ".join(addresses), exc
            )
            return
        self._task = asyncio.create_task(self._register(), name="mdns-advertise")

    async def _register(self) -> None:
        try:
            await self._zc.async_register_service(self._info, allow_name_change=True)
            log.info("mDNS: advertising %s on %s:%d", self._info.name, ",".join(self.addresses), self.coap_port)
        except Exception as exc:  # noqa: BLE001 — advertising is best effort; the master runs without it
            log.warning("mDNS: advertising failed (%s); boards use the address in their config", exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._zc is not None:
            try:
                await self._zc.async_close()  # unregisters (goodbye packets) and closes the sockets
            except Exception as exc:  # noqa: BLE001 — a stop must finish
                log.warning("mDNS: close failed: %s", exc)
            self._zc = None
