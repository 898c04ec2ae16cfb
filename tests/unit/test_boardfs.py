"""pifleet.boardfs in-process: config.json's one writer, module stems, a board's files and its vfs image."""

from __future__ import annotations

import json
import stat

import pytest

from pifleet import resources
from pifleet.boardfs import bundle, config, layout, mpy, stems
from pifleet.errors import InvalidError

BLIND = {"blind": {"up_pin": 25, "down_pin": 26, "dead_time_ms": 500, "max_seconds": 120}}
WHO = config.Identity("esp-aabbccddeeff", "kitchen", "blind", bytes(range(32)), b"\x07")
MASTER = ("192.0.2.1", 5683)


def test_a_board_config_carries_identity_wifi_and_the_module_stems():
    written = config.config_json(WHO, "blind", BLIND, master=MASTER, wifi=("home", "pw"), modules={"blind": "b_1"})
    assert written == {
        "role": "blind",
        "et": "pifleet.esp32",
        "master": {"host": "192.0.2.1", "port": 5683},
        "wifi": {"ssid": "home", "psk": "pw"},
        "listen_port": 5683,
        "lifetime": 60,
        "caps": BLIND,
        "device_id": "esp-aabbccddeeff",
        "name": "kitchen",
        "secret": bytes(range(32)).hex(),
        "oscore_id": "07",
        "modules": {"blind": "b_1"},
    }
    assert json.loads(config.encode(written)) == written


def test_a_board_without_identity_waits_for_adoption():
    written = config.config_json(None, "blind", BLIND, master=MASTER, wifi=("home", "pw"))
    assert not {"device_id", "name", "secret", "oscore_id"} & set(written)
    assert config.identity_of(written) is None


def test_a_process_config_has_no_wifi_and_no_master_search():
    written = config.config_json(
        None, "process", {}, master=MASTER, wifi=None, mdns=False, et=config.PROCESS, listen_port=5700
    )
    assert "wifi" not in written
    assert written["master"] == {"host": "192.0.2.1", "port": 5683, "mdns": False}
    assert (written["et"], written["listen_port"]) == ("pifleet.process", 5700)


def test_the_identity_in_a_config_reads_back():
    written = config.config_json(WHO, "blind", BLIND, master=MASTER, wifi=None)
    assert config.identity_of(written) == WHO
    assert config.identity_of({**written, "oscore_id": None}) == WHO._replace(oscore_id=None)


def test_save_writes_a_private_file_in_one_step(tmp_path):
    (tmp_path / "config.json.new").write_text("left over from a crash")
    written = config.config_json(WHO, "process", {}, master=MASTER, wifi=None)
    config.save(tmp_path, written)
    path = tmp_path / "config.json"
    assert json.loads(path.read_text()) == written
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_a_module_stem_is_its_name_and_the_start_of_its_sha256():
    sha = stems.module_sha("x = 1\n")
    assert len(sha) == 64
    assert stems.module_stem("relay", "x = 1\n") == stems.stem_of("relay", sha) == f"relay_{sha[:10]}"
    assert stems.module_stem("relay", "x = 2\n") != stems.module_stem("relay", "x = 1\n")


def test_board_files_as_source_hold_agent_role_modules_and_config():
    files, line = bundle.board_files(WHO, version="1.24.1", master=MASTER, wifi=("s", "p"), caps=BLIND, compiled=False)
    assert line == "source"
    shipped = (resources.capabilities() / "blind.py").read_text()
    stem = stems.module_stem("blind", shipped)
    assert files[f"caps/{stem}.py"] == shipped.encode()
    assert files["boot.py"] == (resources.agent() / "boot.py").read_bytes()
    assert {f"agent/{p.name}" for p in (resources.agent() / "agent").glob("*.py")} <= set(files)
    written = json.loads(files["config.json"])
    assert written["modules"] == {"blind": stem}
    assert written["device_id"] == WHO.device_id and written["role"] == "blind"


def test_board_files_take_the_role_versions_the_master_stores():
    source = "NAME = 'blind'\n# a version uploaded by a person\n"
    files, _ = bundle.board_files(
        WHO, version="1.24.1", master=MASTER, wifi=("s", "p"), caps=BLIND, compiled=False, sources={"blind": source}
    )
    assert files[f"caps/{stems.module_stem('blind', source)}.py"] == source.encode()


def test_a_capability_without_a_module_is_refused():
    with pytest.raises(InvalidError, match="needs capability 'nothing'"):
        bundle.board_files(WHO, version="1.24.1", master=MASTER, wifi=("s", "p"), caps={"nothing": {}}, compiled=False)


def test_without_a_partition_table_vfs_is_where_micropython_puts_it():
    vfs = bundle.vfs_partition(b"\xff" * 0x1000, 0x1000, None)
    assert (vfs.label, vfs.offset, vfs.end) == ("vfs", layout.VFS_OFFSET, layout.DEFAULT_FLASH_SIZE)
    with pytest.raises(InvalidError, match="overlaps"):
        bundle.vfs_partition(b"\xff" * layout.VFS_OFFSET, 0x1000, None)


def test_a_built_bundle_is_a_littlefs_image_of_compiled_modules():
    blank = b"\xff" * 0x1000  # a base image whose table is not there: MicroPython's default vfs
    kw = dict(image_offset=0x1000, version="v1.24.1", flash_size=None, master=MASTER, wifi=("s", "p"), caps=BLIND)
    built = bundle.build(WHO, image=blank, **kw)
    assert built.offset == layout.VFS_OFFSET and built.mpy_cross == "v1.23.0"
    assert len(built.image) == layout.DEFAULT_FLASH_SIZE - layout.VFS_OFFSET
    inside = layout.read_littlefs(built.image)
    assert inside == built.files
    assert inside["agent/app.mpy"][:2] == b"M\x06"
    assert json.loads(inside["config.json"])["name"] == "kitchen"


def test_mpy_cross_names_the_module_and_line_it_refuses():
    binary = mpy.mpy_cross_for("1.24.1")
    with pytest.raises(mpy.CompileError) as refused:
        mpy.compile_mpy(binary, b"x = 1\ndef f(:\n", "caps/bad.py")
    assert refused.value.line == 2 and "caps/bad.py" in str(refused.value)
    assert mpy.version_tuple("v1.25.0-preview.12") == (1, 25, 0)
