"""The virtual chip's OTA as ESP-IDF does it: MicroPython's OTA table, the two otadata sectors (sequence numbers,
CRC-32, states), the bootloader's choice and rollback, and the esp32 shim's Partition OTA calls in the real
MicroPython interpreter writing the same bytes the bootloader reads."""

from __future__ import annotations

import os
import subprocess

import pytest

from pifleet.boardfs.layout import TABLE_OFFSET, parse_partition_table
from pifleet.sim.board import SHIMS, micropython_binary
from pifleet.sim.chip import Chip
from pifleet.sim.firmware import (
    ABORTED,
    NEW,
    PENDING_VERIFY,
    VALID,
    build_app,
    build_image,
    parse_select,
    select_entry,
)
from pifleet.sim.flash import Flash

pytestmark = pytest.mark.skipif(micropython_binary() is None, reason="no micropython binary")

OTADATA = 0xD000


def test_the_chip_builds_its_shim_for_the_boards_micropython():
    from pifleet.sim.board import SIM_MICROPYTHON
    from pifleet.sim.chip import UNIX_PORT_MICROPYTHON

    assert UNIX_PORT_MICROPYTHON == SIM_MICROPYTHON


def test_ota_table_is_micropythons_and_the_crc_is_esp_idfs():
    parts = parse_partition_table(build_image(ota=True)[TABLE_OFFSET - 0x1000 :][:0xC00])
    assert [(p.label, p.offset, p.size) for p in parts] == [
        ("nvs", 0x9000, 0x4000),
        ("otadata", 0xD000, 0x2000),
        ("phy_init", 0xF000, 0x1000),
        ("ota_0", 0x10000, 0x180000),
        ("ota_1", 0x190000, 0x180000),
    ]
    # seq 1's entry as ESP-IDF writes it: crc32_le(UINT32_MAX, &seq, 4) = 0x4743989a (otatool computes the same)
    assert select_entry(1, VALID)[-4:] == bytes.fromhex("9a984347")


def mpy(flash: Flash, code: str) -> str:
    env = dict(os.environ, PIFLEET_SIM_FLASH=str(flash.path), MICROPYPATH=str(SHIMS))
    out = subprocess.run([micropython_binary(), "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def entries(flash: Flash) -> list[tuple[int, int]]:
    return [parse_select(flash.read(OTADATA + n * 4096, 32))[:2] for n in (0, 1)]


WRITE_B = """
import esp32, hashlib
run = esp32.Partition(esp32.Partition.RUNNING)
nxt = run.get_next_update()
with open({path!r}, 'rb') as f:
    data = f.read()
for off in range(0, len(data), 512):
    if off % 4096 == 0:
        nxt.ioctl(6, off // 4096)
    nxt.writeblocks(off // 4096, data[off:off + 512], off % 4096)
nxt.set_boot()
print(run.info()[4], nxt.info()[4], esp32.Partition(esp32.Partition.BOOT).info()[4])
"""


@pytest.fixture
def chip(tmp_path):
    flash = Flash(tmp_path / "flash.bin")
    flash.write(0x1000, build_image(version="v1.24.1", ota=True))
    c = Chip("ota", flash, b"\x02\xe5\x32\0\0\1", tmp_path / "console.log", spawn=None)
    yield c
    c._closing = True  # never started: only its descriptors to close
    for fd in (c._master, c._wake_r, c._wake_w):
        os.close(fd)
    c._console.close()


def boot(chip: Chip) -> tuple[str, str]:
    parts = parse_partition_table(chip.flash.read(TABLE_OFFSET, 0xC00))
    app = chip._select_app(parts)
    chip._app_started(app)
    return chip.running


def test_update_switches_slots_and_an_unconfirmed_app_rolls_back(chip, tmp_path):
    flash = chip.flash
    assert boot(chip) == ("ota_0", "v1.24.1")  # erased otadata: ota_0, and otadata[0] learns it
    assert entries(flash) == [(1, VALID), (0xFFFFFFFF, 0xFFFFFFFF)]
    (tmp_path / "b.bin").write_bytes(build_app(version="v1.25.0"))
    assert mpy(flash, WRITE_B.format(path=str(tmp_path / "b.bin"))).split() == ["ota_0", "ota_1", "ota_1"]
    assert entries(flash) == [(1, VALID), (2, NEW)]
    assert boot(chip) == ("ota_1", "v1.25.0")
    assert entries(flash)[1] == (2, PENDING_VERIFY)
    # reset without confirming: the bootloader aborts it and starts the previous image
    assert boot(chip) == ("ota_0", "v1.24.1")
    assert entries(flash) == [(1, VALID), (2, ABORTED)]
    assert "ABORTED (rollback)" in (tmp_path / "console.log").read_text()


def test_confirmed_app_stays_and_the_next_update_goes_to_the_other_slot(chip, tmp_path):
    flash = chip.flash
    boot(chip)
    (tmp_path / "b.bin").write_bytes(build_app(version="v1.25.0"))
    mpy(flash, WRITE_B.format(path=str(tmp_path / "b.bin")))
    assert boot(chip) == ("ota_1", "v1.25.0")
    mpy(flash, "import esp32\nesp32.Partition.mark_app_valid_cancel_rollback()")
    assert entries(flash) == [(1, VALID), (2, VALID)]
    assert boot(chip) == ("ota_1", "v1.25.0")
    (tmp_path / "c.bin").write_bytes(build_app(version="v1.26.0"))
    assert mpy(flash, WRITE_B.format(path=str(tmp_path / "c.bin"))).split() == ["ota_1", "ota_0", "ota_0"]
    assert entries(flash) == [(3, NEW), (2, VALID)]
    assert boot(chip) == ("ota_0", "v1.26.0")


def test_damaged_image_is_refused_by_set_boot_or_skipped_by_the_bootloader(chip, tmp_path):
    flash = chip.flash
    boot(chip)
    app = bytearray(build_app(version="v1.25.0"))
    app[600] ^= 0xFF  # a flipped byte in a segment: checksum and SHA-256 no longer match
    (tmp_path / "b.bin").write_bytes(bytes(app))
    mpy(flash, WRITE_B.format(path=str(tmp_path / "b.bin")))
    assert boot(chip) == ("ota_0", "v1.24.1")
    # the vfs the port registers on an OTA table: from the end of ota_1 to the end of flash
    assert mpy(flash, "import esp32\nprint(esp32.Partition.find(1, label='vfs')[0].info()[2:4])").strip() == (
        "(3211264, 983040)"
    )
