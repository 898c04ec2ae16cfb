"""layout.py: partition tables against ESP-IDF's byte format, littlefs images both ways with MicroPython."""

import hashlib
import os
import struct
import subprocess

import pytest

from pifleet.boardfs.layout import (
    APP,
    DATA,
    LayoutError,
    Partition,
    build_littlefs,
    build_partition_table,
    find_app,
    find_vfs,
    micropython_default_table,
    parse_partition_table,
    read_littlefs,
)
from pifleet.sim.board import SHIMS, micropython_binary

MiB = 1024 * 1024


def test_table_bytes_match_gen_esp32part():
    table = build_partition_table(
        [Partition("nvs", DATA, 0x02, 0x9000, 0x6000), Partition("factory", APP, 0x00, 0x10000, 0x1F0000)]
    )
    assert len(table) == 0xC00
    first = b"\xaa\x50\x01\x02" + struct.pack("<LL", 0x9000, 0x6000) + b"nvs".ljust(16, b"\0") + b"\0" * 4
    second = b"\xaa\x50\x00\x00" + struct.pack("<LL", 0x10000, 0x1F0000) + b"factory".ljust(16, b"\0") + b"\0" * 4
    assert table[:64] == first + second
    assert table[64:96] == b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(first + second).digest()
    assert table[96:] == b"\xff" * (0xC00 - 96)


def test_default_table_round_trips_and_finds_vfs():
    for size in (4 * MiB, 8 * MiB):
        parts = parse_partition_table(build_partition_table(micropython_default_table(size)))
        assert parts == micropython_default_table(size)
        vfs = find_vfs(parts)
        assert (vfs.label, vfs.offset, vfs.end) == ("vfs", 0x200000, size)
        assert find_app(parts).offset == 0x10000


def test_bad_tables_are_refused():
    good = bytearray(build_partition_table(micropython_default_table()))
    with pytest.raises(LayoutError, match="no partition table"):
        parse_partition_table(b"\xff" * 0xC00)
    good[40] ^= 1  # a flipped bit in the second entry
    with pytest.raises(LayoutError, match="MD5"):
        parse_partition_table(bytes(good))
    with pytest.raises(LayoutError, match="magic"):
        parse_partition_table(b"\x12\x34" + b"\0" * 30 + b"\xff" * 0xBE0)
    with pytest.raises(LayoutError):
        micropython_default_table(2 * MiB)


def test_littlefs_round_trip_and_errors():
    files = {"boot.py": b"print(1)\n", "agent/app.py": b"X = 1\n", "caps/deep/x.bin": bytes(range(256)) * 40}
    image = build_littlefs(files, 64 * 4096)
    assert len(image) == 64 * 4096
    assert read_littlefs(image) == files
    with pytest.raises(LayoutError, match="not a littlefs"):
        read_littlefs(b"\xff" * 64 * 4096)
    with pytest.raises(LayoutError, match="cannot build"):
        build_littlefs({"big": b"x" * 5 * 4096}, 4 * 4096)
    with pytest.raises(LayoutError):
        build_littlefs({}, 1000)


@pytest.mark.skipif(micropython_binary() is None, reason="no MicroPython unix port")
def test_micropython_vfslfs2_mounts_our_image_and_we_read_its_writes(tmp_path):
    """The real interpreter's vfs.VfsLfs2, over the esp32.Partition shim, with its default parameters."""
    flash = bytearray(b"\xff" * 4 * MiB)
    flash[0x8000:0x8C00] = build_partition_table(micropython_default_table())
    flash[0x200000:] = build_littlefs({"boot.py": b"# boot\n", "lib/m.py": b"V = 7\n"}, 2 * MiB)
    path = tmp_path / "flash.bin"
    path.write_bytes(flash)
    script = (
        "import esp32, vfs, os\n"
        "vfs.mount(vfs.VfsLfs2(esp32.Partition('vfs')), '/f')\n"
        "print(sorted(os.listdir('/f')), open('/f/lib/m.py').read().strip())\n"
        "with open('/f/lib/new.txt', 'w') as f:\n f.write('from the board')\n"
        "os.remove('/f/boot.py')\n"
        "vfs.umount('/f')\n"
    )
    env = dict(os.environ, PIFLEET_SIM_FLASH=str(path), MICROPYPATH=str(SHIMS))
    done = subprocess.run(
        [micropython_binary(), "-c", script], env=env, capture_output=True, text=True, timeout=10, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['boot.py', 'lib'] V = 7"
    assert read_littlefs(path.read_bytes()[0x200000:]) == {"lib/m.py": b"V = 7\n", "lib/new.txt": b"from the board"}
