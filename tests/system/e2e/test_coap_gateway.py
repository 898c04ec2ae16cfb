"""The master's CoAP endpoint against independent peers (aiocoap's client, libcoap's coap-client) and garbage."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess

import aiocoap
import pytest

from tests.support.waits import wait_until_async

MALFORMED = [
    b"",  # empty datagram
    b"\x40",  # truncated header
    b"\x49\x01\x00\x01",  # token length 9 (reserved)
    b"\x40\x01\x00\x01\xd0",  # option delta 13 without its extension byte
    b"\x40\x01\x00\x01\xbf\xff",  # option length 15 (reserved) before a payload marker
    b"\x40\x01\x00\x01\xff",  # payload marker with no payload
    bytes(range(256)) * 4,  # noise
]


def coap_client_binary() -> str:
    found = shutil.which("coap-client-notls") or shutil.which("coap-client")
    if found is None:
        pytest.fail("libcoap's coap-client is missing: tools/dev test installs Debian's libcoap3-bin")
    return found


async def get(uri: str) -> aiocoap.Message:
    ctx = await aiocoap.Context.create_client_context()
    try:
        return await asyncio.wait_for(ctx.request(aiocoap.Message(code=aiocoap.GET, uri=uri)).response, 10)
    finally:
        await ctx.shutdown()


async def test_aiocoap_reads_the_masters_well_known_core(module_master):
    host, port = module_master.coap
    response = await get(f"coap://{host}:{port}/.well-known/core")
    assert response.code == aiocoap.CONTENT
    assert response.opt.content_format == 40
    assert '</rd>;rt="core.rd"' in response.payload.decode()


def test_libcoap_reads_the_masters_well_known_core(module_master):
    host, port = module_master.coap
    out = subprocess.run(
        [coap_client_binary(), "-m", "get", "-B", "5", f"coap://{host}:{port}/.well-known/core"],
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert out.returncode == 0, out.stderr
    assert '</rd>;rt="core.rd"' in out.stdout


async def test_malformed_datagrams_are_dropped_counted_and_the_master_keeps_serving(module_master):
    host, port = module_master.coap
    before = module_master.get("/api/metrics").get("malformed_dropped", 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for datagram in MALFORMED:
            s.sendto(datagram, (host, port))
    await wait_until_async(
        lambda: module_master.get("/api/metrics").get("malformed_dropped", 0) - before >= 5,
        what="the master to count the malformed datagrams it dropped",
        explain=module_master.log_tail,
    )
    response = await get(f"coap://{host}:{port}/.well-known/core")
    assert response.code == aiocoap.CONTENT
    after = module_master.get("/api/metrics").get("malformed_dropped", 0)
    assert after - before >= 5, (before, after)
    assert isinstance(module_master.get("/api/devices"), list)  # the HTTP side is unaffected too


async def test_a_registration_without_endpoint_name_is_refused(module_master):
    host, port = module_master.coap
    ctx = await aiocoap.Context.create_client_context()
    try:
        msg = aiocoap.Message(
            code=aiocoap.POST, uri=f"coap://{host}:{port}/rd?lt=60", payload=b"</cap>", content_format=40
        )
        response = await asyncio.wait_for(ctx.request(msg).response, 10)
    finally:
        await ctx.shutdown()
    assert response.code == aiocoap.BAD_REQUEST
    assert b"ep" in response.payload
    assert module_master.get("/api/metrics")["registrations_refused"] >= 1
