"""The virtual ESP32 as a real board's USB port: esptool flashes it, it boots what was written, mpremote
reaches its REPL. Unmodified esptool and mpremote, default options, through the board's pty."""

import json
import os
import subprocess
import sys
import time

import pytest

from pifleet.boardfs.layout import build_littlefs, read_littlefs
from pifleet.runtime import free_udp_port, runtime_dir
from pifleet.sim import VirtualBoard
from pifleet.sim.board import AGENT_HEAP_64, DEFAULT_HEAPSIZE, SHIMS, SHIMS_HEAP, micropython_binary
from pifleet.sim.firmware import build_image
from tests.support.waits import wait_until

pytestmark = pytest.mark.skipif(micropython_binary() is None, reason="no MicroPython unix port")
VFS = 0x200000


def esptool(port, *args, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "esptool", "--port", port, *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def erased_board(tmp_path):
    board = VirtualBoard("t-flash", tmp_path / "b", role="blind", master=("127.0.0.1", free_udp_port()), erased=True)
    board.start()
    yield board
    board.stop()


def test_esptool_flashes_an_erased_board_which_then_boots_the_agent(erased_board, tmp_path):
    board = erased_board
    wait_until(
        lambda: "invalid header: 0xffffffff" in board.console_text(),
        timeout=10,
        what="the erased board's boot to stop at the empty flash",
        explain=board.console_text,
    )
    assert board.state == "halted"
    info = json.loads((runtime_dir() / "sim-ports" / "t-flash.json").read_text())
    assert info["port"] == board.serial_port and info["chip"] == "ESP32"

    image, fs = tmp_path / "micropython.bin", tmp_path / "vfs.bin"
    image.write_bytes(build_image())
    files = board.board_files()
    fs.write_bytes(build_littlefs(files, 0x200000))
    done = esptool(board.serial_port, "write-flash", "0x1000", str(image), hex(VFS), str(fs))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Chip type:          ESP32" in done.stdout and "MAC:                02:e5:32" in done.stdout
    assert "Hash of data verified" in done.stdout

    # esptool's reset at the end (--after hard-reset): the board boots from the flash just written.
    board.wait_ready()
    on_board = board.read_files()
    on_board.pop("boots", None)  # the agent's boot record (agent/boots.py), written by the board as it boots
    assert on_board == files

    # the image as written; the filesystem has the board's own boot record in it now, so it is read back instead
    done = esptool(board.serial_port, "verify-flash", "0x1000", str(image))
    assert done.returncode == 0 and "verify OK" in done.stdout.replace("Verification successful", "verify OK"), (
        done.stdout + done.stderr
    )
    back = tmp_path / "back.bin"
    done = esptool(board.serial_port, "read-flash", hex(VFS), "0x200000", str(back))
    assert done.returncode == 0, done.stdout + done.stderr
    read_back = read_littlefs(back.read_bytes())
    read_back.pop("boots", None)  # the board's own boot record
    assert read_back == files
    board.wait_ready()  # and back to the agent once more

    done = esptool(board.serial_port, "erase-flash")
    assert done.returncode == 0, done.stdout + done.stderr
    wait_until(lambda: board.state == "halted", timeout=10, what="the erased board halted", explain=board.console_text)
    assert board.flash_path.read_bytes() == b"\xff" * board.flash_size


def test_esptool_no_stub_and_staying_in_the_bootloader(erased_board, tmp_path):
    board = erased_board
    image = tmp_path / "micropython.bin"
    image.write_bytes(build_image())
    wait_until(
        lambda: board.state == "halted", timeout=10, what="the erased board's power-on boot", explain=board.console_text
    )
    boots = board._chip.boots
    done = esptool(board.serial_port, "--after", "no-reset", "write-flash", "0x1000", str(image))
    assert done.returncode == 0, done.stdout + done.stderr
    # The chip decides when it sees esptool close the port: reset and boot (--after hard-reset), or stay. The sim
    # has no public word for "it saw the close"; its chip's flag is that moment. A boot decided then would take a
    # few more steps to count itself: the short grace is for those, as nothing marks that no boot came.
    wait_until(
        lambda: not board._chip._port_open,
        timeout=10,
        what="the chip to see esptool close its port",
        explain=lambda: f"esptool said:\n{done.stdout}{done.stderr}\nconsole:\n{board.console_text()}",
    )
    time.sleep(0.1)
    assert board._chip.boots == boots
    assert board.state == "download"  # the stub went back to the ROM loader, as asked: no boot
    assert board.flash_path.read_bytes()[0x1000 : 0x1000 + len(image.read_bytes())] == image.read_bytes()
    # The ROM loader alone (no stub): write and MD5-verify work too.
    done = esptool(board.serial_port, "--no-stub", "write-flash", hex(VFS), str(image))
    assert done.returncode == 0 and "Hash of data verified" in done.stdout, done.stdout + done.stderr


def test_mpremote_runs_code_on_a_running_board(tmp_path):
    board = VirtualBoard("t-repl", tmp_path, role="blind", master=("127.0.0.1", free_udp_port()))
    board.start()
    try:
        board.wait_ready()
        for args in (
            ["exec", "print(1+1)"],
            [
                "resume",
                "exec",
                "import os; print(sorted(os.listdir('/lib') if 'lib' in os.listdir() else os.listdir()))",
            ],
        ):
            done = subprocess.run(
                [sys.executable, "-m", "mpremote", "connect", board.serial_port, *args],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert done.returncode == 0, done.stdout + done.stderr
        assert "config.json" in done.stdout
        # A file written on the board lands in the flash file's littlefs.
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "mpremote",
                "connect",
                board.serial_port,
                "resume",
                "exec",
                "f = open('/note.txt', 'w'); f.write('hi'); f.close()",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert board.read_files()["note.txt"] == b"hi"
    finally:
        board.stop()
    assert not (runtime_dir() / "sim-ports" / "t-repl.json").exists()


def test_a_board_that_never_answers_the_sync_fails_clearly(tmp_path):
    board = VirtualBoard("t-mute", tmp_path, erased=True, loader_enabled=False)
    board.start()
    try:
        started = time.monotonic()
        done = esptool(board.serial_port, "read-mac", timeout=60)
        elapsed = time.monotonic() - started
    finally:
        board.stop()
    assert done.returncode != 0
    assert (
        "Failed to connect to Espressif device" in done.stdout + done.stderr
        or "Failed to connect" in done.stdout + done.stderr
    ), done.stdout + done.stderr
    assert elapsed < 30


def test_sim_start_prints_its_serial_port_first_and_stops_cleanly(tmp_path):
    """`pifleet sim start`: scripts read the first line, `serial: PORT`, and hand PORT to esptool or mpremote."""
    import os
    import re
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pifleet",
            "sim",
            "start",
            "t-cli",
            "--role",
            "blind",
            "--data-dir",
            str(tmp_path),
            "--master",
            "127.0.0.1:9",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        first = proc.stdout.readline().strip()
        assert re.fullmatch(r"serial: /dev/pts/\d+", first), first
        assert os.path.exists(first.split(": ", 1)[1])
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "board: t-cli stopped" in out


def test_the_shims_share_of_the_heap_is_what_they_take(tmp_path):
    """SHIMS_HEAP, added to the virtual ESP32's heap for what a board has in C, is what the shims a running board
    holds (as _boot imports them: esp32, the io, machine, network) take in the 64-bit port: not less (the agent
    would have less room than on a board) and not much more (it would have more)."""
    script = tmp_path / "measure.py"
    script.write_text(
        "import gc\ngc.collect()\nbefore = gc.mem_alloc()\n"
        "import esp32, _simio, machine, network\n"
        "gc.collect()\nprint('shims', gc.mem_alloc() - before)\n"
    )
    env = dict(
        os.environ,
        MICROPYPATH=str(SHIMS),
        PIFLEET_SIM_IO=str(tmp_path),
        PIFLEET_SIM_IP="127.0.0.1",
        PIFLEET_SIM_MAC="24b2deadbeef",
    )
    out = subprocess.run(
        [micropython_binary(), "-X", f"heapsize={DEFAULT_HEAPSIZE}", str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=True,
    ).stdout
    taken = int(out.split("shims")[1])
    assert taken <= SHIMS_HEAP <= taken + 4096, (taken, SHIMS_HEAP)
    assert DEFAULT_HEAPSIZE == AGENT_HEAP_64 + SHIMS_HEAP
