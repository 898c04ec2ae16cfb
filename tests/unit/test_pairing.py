"""Pairing in-process: one identity scheme, one secret maker, keys handed to the link, revoke; a real PostgreSQL.

What a user would notice: the device a board becomes (its id and name), whether the master can talk to it
(the keys the gateway holds: here a fake BoardKeys), and what revoking does to the device list.
"""

from __future__ import annotations

import os

import pytest

from pifleet.devices.adoption import AdoptionService, Announcement, proof_of, stretch
from pifleet.devices.identity import SECRET_BYTES, device_id_for, new_secret
from pifleet.devices.pairing import PairingService
from pifleet.events import EventHub
from pifleet.storage import devices as devices_q
from tests.unit.test_registry import FakeBoards

CODE = "7K3MQ9TX"


@pytest.fixture
def keys() -> FakeBoards:
    return FakeBoards()


@pytest.fixture
def pairing(pool, keys) -> PairingService:
    return PairingService(pool, EventHub(), keys)


async def paired_device(pool, mac: str, name: str, **kw) -> tuple[str, str, bytes]:
    """A board given its identity the way flashing and adoption do; (device id, name it got, secret)."""
    device_id, secret = device_id_for(mac), new_secret()
    async with pool.acquire() as conn:
        got = await devices_q.record_identity(
            conn,
            device_id=device_id,
            name=name,
            role=None,
            mac=mac,
            secret=secret,
            oscore_id=await devices_q.next_oscore_id(conn),
            **kw,
        )
    return device_id, got, secret


def test_one_identity_scheme_names_a_board_by_its_mac():
    assert device_id_for("24:0a:c4:12:AB:cd") == "esp-240ac412abcd"
    assert device_id_for("240ac412abcd") == "esp-240ac412abcd"
    fresh = {device_id_for("24:0a:c4:12:ab:cd", fresh=True) for _ in range(8)}
    assert all(f.startswith("esp-240ac412abcd-") for f in fresh) and len(fresh) > 1  # a factory reset: new each time


def test_every_pairing_gets_a_fresh_secret():
    secrets = {new_secret() for _ in range(16)}
    assert len(secrets) == 16 and {len(s) for s in secrets} == {SECRET_BYTES} == {32}


async def test_a_paired_board_s_keys_go_to_the_link_and_come_back_at_start(pool, pairing, keys):
    device_id, name, secret = await paired_device(pool, "24:0a:c4:00:00:01", "kitchen")
    assert name == "kitchen"
    await pairing.paired(device_id)
    assert keys.keys[device_id][1] == secret
    after_restart = FakeBoards()
    await PairingService(pool, EventHub(), after_restart).restore()
    assert after_restart.keys[device_id] == keys.keys[device_id]


async def test_a_name_another_device_holds_gets_the_id_appended(pool):
    await paired_device(pool, "24:0a:c4:00:00:02", "garage")
    device_id, name, _ = await paired_device(pool, "24:0a:c4:00:00:03", "garage")
    assert name == f"garage-{device_id}"
    assert (await devices_q.get_by_id(pool, device_id)).name == name


async def test_revoke_forgets_the_keys_and_marks_the_board(pool, pairing, keys):
    device_id, name, _ = await paired_device(pool, "24:0a:c4:00:00:04", "cellar")
    await pairing.paired(device_id)
    await pool.execute(
        "update devices set registration_id = 'rid-cellar', last_seen = now(), address = '127.0.2.1', port = 5683"
        " where id = $1",
        device_id,
    )
    assert (await devices_q.get_by_id(pool, device_id)).online
    assert await pairing.revoke(device_id)
    assert device_id not in keys.keys
    device = await devices_q.get_by_id(pool, device_id)
    assert not device.online and device.unreachable == "revoked"
    assert await devices_q.registration_owner(pool, "rid-cellar") is None  # its registration is gone
    assert await devices_q.paired_board(pool, device_id) is None  # and its secret
    after_restart = FakeBoards()
    await PairingService(pool, EventHub(), after_restart).restore()
    assert device_id not in after_restart.keys
    assert not await pairing.revoke("esp-000000000000")  # no such board


async def test_pairing_again_after_revoke_gives_new_keys(pool, pairing, keys):
    device_id, _, first = await paired_device(pool, "24:0a:c4:00:00:05", "attic")
    await pairing.revoke(device_id)
    again, name, second = await paired_device(pool, "24:0a:c4:00:00:05", "attic")
    await pairing.paired(again)
    assert again == device_id and name == "attic" and second != first
    assert keys.keys[device_id][1] == second
    device = await devices_q.get_by_id(pool, device_id)
    assert device.unreachable is None


async def test_a_factory_reset_identity_replaces_the_old_device(pool):
    old, _, _ = await paired_device(pool, "24:0a:c4:00:00:06", "shed")
    new = device_id_for("24:0a:c4:00:00:06", fresh=True)
    async with pool.acquire() as conn:
        await devices_q.record_identity(
            conn,
            device_id=new,
            name="shed",
            role=None,
            mac="24:0a:c4:00:00:06",
            secret=new_secret(),
            oscore_id=await devices_q.next_oscore_id(conn),
            replaces=old,
        )
    assert await devices_q.get_by_id(pool, old) is None
    assert (await devices_q.get_by_name(pool, "shed")).id == new


async def test_an_adopted_board_is_named_by_the_one_scheme_and_paired(pool, pairing, keys):
    adoption = AdoptionService(pool, EventHub(), paired=pairing.paired)
    mac, nonce = "24:0a:c4:00:00:07", os.urandom(16)
    announced = Announcement(mac=mac, chip="ESP32", nonce=nonce, proof=proof_of(stretch(CODE, nonce)))
    state, sealed = await adoption.announce(announced, "127.0.2.7", 5683)
    assert (state, sealed) == ("waiting", None)
    (waiting,) = [a for a in await adoption.list(pending_only=True) if a.mac == mac]
    adopted = await adoption.confirm(waiting.id, CODE.lower(), name="porch-light")
    assert adopted.state == "adopted" and adopted.device_id == device_id_for(mac)
    assert adopted.device_id in keys.keys  # the gateway can talk to it at once
    assert (await devices_q.get_by_name(pool, "porch-light")).id == device_id_for(mac)
    state, sealed = await adoption.announce(announced, "127.0.2.7", 5683)
    assert state == "adopted" and sealed is not None and set(sealed) == {"iv", "box", "tag"}
