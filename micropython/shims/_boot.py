"""The virtual ESP32's first step, like the ESP32 port's frozen _boot.py: mount the flash's vfs, run boot/main.

Layer: unix-port shim (never copied to a board). The littlefs of the flash file's `vfs` partition (through the
esp32.Partition shim) becomes "/" and the working directory, so relative and absolute paths behave as on a
board; the host's own files stay reachable under /host, which is where the shims and the sim's io directory
are found from then on. A blank partition is formatted, as MicroPython's inisetup does on first boot.
"""

import os
import sys

import esp32
import vfs

_BOOT_PY = """\
# This file is executed on every boot (including wake-boot from deepsleep)
#import esp
#esp.osdebug(None)
#import webrepl
#webrepl.start()
"""


def _mount():
    parts = esp32.Partition.find(esp32.Partition.TYPE_DATA, label="vfs")
    if not parts:
        print("no vfs partition; running without a filesystem")
        return False
    bdev = parts[0]
    import _simio  # bound to the host path now; later opens go through /host

    _simio._IO_DIR = "/host" + _simio._IO_DIR if _simio._IO_DIR.startswith("/") else _simio._IO_DIR
    vfs.umount("/")
    try:
        fs = vfs.VfsLfs2(bdev)
    except OSError:
        print("Performing initial setup")
        vfs.VfsLfs2.mkfs(bdev)
        fs = vfs.VfsLfs2(bdev)
        first = True
    else:
        first = False
    vfs.mount(fs, "/")
    vfs.mount(vfs.VfsPosix("/"), "/host")
    os.chdir("/")
    if first:
        with open("boot.py", "w") as f:
            f.write(_BOOT_PY)
    sys.path[:] = ["", ".frozen", "/lib"] + ["/host" + p for p in sys.path if p.startswith("/") and p != "/lib"]
    return True


def _run(name):
    try:
        os.stat(name + ".py")
    except OSError:
        return
    try:
        __import__(name)
    except Exception as e:  # noqa: BLE001 — as pyexec_file does: print it, and the board goes on
        sys.print_exception(e)


if _mount():
    try:
        import agent.port

        agent.port.MACHINE = "Generic ESP32 module with ESP32"  # sys.implementation._machine of ESP32_GENERIC
    except ImportError:
        pass  # MicroPython without the agent (flashed elsewhere, or erased)
    if os.getenv("PIFLEET_SIM_TICKS"):  # the ESP32's 30-bit tick counter, started near its wrap (_simticks)
        import _simticks

        _simticks.install()
    import _simmpy  # the .mpy version of the image the chip started: what boot.py and the agent see and load

    _simmpy.install()
    _run("boot")
    _simmpy.check()
    del sys.modules["_simmpy"], _simmpy
    import gc

    gc.collect()  # the shim was compiled here: its garbage out before the agent's start needs the heap
    if not os.getenv("PIFLEET_SIM_SOFT_RESET"):  # a soft reset into the raw REPL skips main.py, as the port
        _run("main")
