"""The virtual ESP32 image (pifleet/sim/firmware.py) is one esptool itself accepts, part by part."""

import subprocess
import sys

import pytest

from pifleet.boardfs.layout import find_vfs, parse_partition_table
from pifleet.sim.firmware import bootloader_offset, build_app, build_bootloader, build_image


@pytest.mark.parametrize("chip", ["esp32", "esp32s3", "esp32c3"])
def test_esptool_image_info_accepts_each_part(chip, tmp_path):
    for name, data in (("boot", build_bootloader(chip)), ("app", build_app(chip, "v1.23.0"))):
        path = tmp_path / f"{name}.bin"
        path.write_bytes(data)
        done = subprocess.run(
            [sys.executable, "-m", "esptool", "--chip", chip, "image-info", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Checksum: 0x" in done.stdout and "(valid)" in done.stdout
        if name == "app":
            assert "Project name: micropython" in done.stdout and "App version: v1.23.0" in done.stdout


def test_merged_image_layout():
    image = build_image()
    base = bootloader_offset("esp32")
    assert base == 0x1000 and image[0] == 0xE9 and len(image) < 80_000
    parts = parse_partition_table(image[0x8000 - base : 0x8C00 - base])
    assert (find_vfs(parts).offset, find_vfs(parts).end) == (0x200000, 0x400000)
    assert image[0x10000 - base] == 0xE9
    assert bootloader_offset("esp32s3") == 0 and build_image("esp32s3")[0x10000] == 0xE9
