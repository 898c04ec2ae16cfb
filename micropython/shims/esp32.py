"""`esp32` for the virtual ESP32: `Partition` over the board's flash file, like the ESP32 port's, OTA included.

Layer: unix-port shim (never copied to a board). The flash file is $PIFLEET_SIM_FLASH, the image the virtual
chip's ROM loader writes with esptool; the partition table is read from 0x8000 as the ESP-IDF bootloader does.
So a littlefs mounted on Partition("vfs") reads and writes the very bytes esptool wrote and reads back.
Only what MicroPython's esp32.Partition offers is here: find, info, readblocks, writeblocks, ioctl, and the OTA
calls (BOOT, RUNNING, get_next_update, set_boot, mark_app_valid_cancel_rollback), which are in _simota.py.
A table without a `vfs` or `ffat` partition gets one from the end of the last partition to the end of flash, as
the ESP32 port's main.c registers it (MicroPython's OTA tables have none).
"""

import os
import struct

import micropython

_TABLE_OFFSET = 0x8000
_TABLE_SIZE = 0xC00
_ENTRY = "<2sBBLL16sL"


_table_cache = None
_erased = b""

# The flash sector littlefs read last, kept (one for every Partition: they share the flash file). littlefs walks a
# directory's log in reads of 32-128 bytes, hundreds for a stat() and nearly all in one 4 KiB metadata block; each a
# seek and a read of the host's file took a tenth of a virtual board's CPU in a rollout (perf: the syscalls). A
# board's flash reads are SPI transfers, not syscalls. Allocated here, at import, so that tests/board/
# test_virtual_esp32.py counts it in the shims' share of the heap (SHIMS_HEAP), never in the agent's.
_SECTOR = 4096
_sector = bytearray(_SECTOR)
_sector_at = [-1]  # the flash offset of what _sector holds; -1: nothing


@micropython.viper
def _copy(dst, src, start: int, n: int):
    d = ptr8(dst)  # noqa: F821 — viper's own types
    s = ptr8(src)  # noqa: F821
    i = 0
    while i < n:
        d[i] = s[start + i]
        i += 1


def _forget_sector(at, length):
    """A write to [at, at + length) of the flash: the sector kept is read again if it overlaps."""
    held = _sector_at[0]
    if held >= 0 and at < held + _SECTOR and held < at + length:
        _sector_at[0] = -1


def _open_flash(mode, suffix=""):
    """The flash file; once _boot has put littlefs at "/", the host's files are under /host."""
    path = (os.getenv("PIFLEET_SIM_FLASH") or "flash.bin") + suffix
    try:
        return open(path, mode)
    except OSError:
        return open("/host" + path, mode)


def _table():
    global _table_cache
    if _table_cache is not None:
        return _table_cache
    with _open_flash("rb") as f:
        f.seek(_TABLE_OFFSET)
        data = f.read(_TABLE_SIZE)
        f.seek(0, 2)
        flash_size = f.tell()
    entries = []
    end = 0
    for pos in range(0, _TABLE_SIZE, 32):
        magic, ptype, subtype, offset, size, label, flags = struct.unpack(_ENTRY, data[pos : pos + 32])
        if magic != b"\xaa\x50":
            break
        stop = label.find(b"\x00")
        label = (label if stop < 0 else label[:stop]).decode()
        entries.append((ptype, subtype, offset, size, label, bool(flags & 1)))
        end = max(end, offset + size)
    if not [e for e in entries if e[0] == 1 and e[4] in ("vfs", "ffat")] and 0 < end < flash_size:
        entries.append((1, 0x81, end, flash_size - end, "vfs", False))  # main.c's esp_partition_register_external
    _table_cache = entries
    return entries


def _ota():
    """The OTA half of the shim, loaded at first use: as the .mpy the virtual chip built beside the flash file
    (FLASH_DIR/sim/_simota.mpy), so no compiler runs in the board's heap, else from source."""
    import sys

    if "_simota" not in sys.modules:
        import gc

        gc.collect()
        cache = (os.getenv("PIFLEET_SIM_FLASH") or "flash.bin").rsplit("/", 1)[0] + "/sim"
        sys.path[:0] = ["/host" + cache, cache]  # once _boot put littlefs at /, the host's files are under /host
        try:
            import _simota
        finally:
            del sys.path[:2]
    import _simota

    return _simota


class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0
    TYPE_DATA = 1

    def __init__(self, id, block_size=4096, _info=None):
        if _info is None:
            if id in (Partition.RUNNING, Partition.BOOT):
                _simota = _ota()

                _info = _simota.running() if id == Partition.RUNNING else _simota.boot_partition()
            else:
                for info in _table():
                    if info[4] == id:
                        _info = info
                        break
            if _info is None:
                raise ValueError("partition not found")
        self._info = _info
        self._offset = _info[2]
        self._size = _info[3]
        self._block_size = block_size
        self._file = _open_flash("r+b")  # now: the host's files may be out of sight later
        # The port's Partition is C and takes nothing from the MicroPython heap while littlefs works; the shim
        # allocates its erased block once (shared by every Partition of that block size), never per call, so the
        # board's free heap stays what a real board would show.
        global _erased
        if len(_erased) != block_size:
            _erased = b"\xff" * block_size
        self._erased = _erased

    @staticmethod
    def find(type=TYPE_APP, subtype=0xFF, label=None, block_size=4096):
        found = []
        for info in _table():
            if info[0] == type and subtype in (0xFF, info[1]) and label in (None, info[4]):
                found.append(Partition(info[4], block_size, info))
        return found

    def info(self):
        return self._info

    def _at(self, block_num, offset, length):
        start = block_num * self._block_size + offset
        if start < 0 or start + length > self._size:
            raise OSError(22)  # EINVAL, as the port raises for an access outside the partition
        f = self._file
        f.seek(self._offset + start)
        return f

    # littlefs reads in pieces of 32-128 bytes (readsize 32, its cache 128), hundreds for each stat() of a file on
    # the agent's flash: an import of one of its modules reads ~850 times. A call from C into bytecode is most of
    # what each costs the host, and machine code (the unix port's native emitter; its code is outside the heap)
    # takes about a fifth off: fifty virtual boards share the host's two cores (tools/bench/module_push.py). A read
    # within one sector comes from the sector kept (_sector), read from the file once.
    @micropython.native
    def readblocks(self, block_num, buf, offset=0):
        start = block_num * self._block_size + offset
        n = len(buf)
        if start < 0 or start + n > self._size:
            raise OSError(22)  # EINVAL, as the port raises for an access outside the partition
        at = self._offset + start
        sector = at - at % _SECTOR
        if at + n > sector + _SECTOR:  # across sectors (a file's data, read straight into its buffer)
            f = self._file
            f.seek(at)
            f.readinto(buf)
            return
        if _sector_at[0] != sector:
            f = self._file
            f.seek(sector)
            f.readinto(_sector)
            _sector_at[0] = sector
        _copy(buf, _sector, at - sector, n)

    def writeblocks(self, block_num, buf, offset=None):
        if offset is None:  # the port erases whole blocks first when no offset is given
            for n in range(len(buf) // self._block_size):
                self.ioctl(6, block_num + n)
            offset = 0
        f = self._at(block_num, offset, len(buf))
        _forget_sector(self._offset + block_num * self._block_size + offset, len(buf))
        f.write(buf)
        f.flush()

    def ioctl(self, op, arg):
        if op == 3:  # sync
            self._file.flush()
            return 0
        if op == 4:  # block count
            return self._size // self._block_size
        if op == 5:  # block size
            return self._block_size
        if op == 6:  # erase one block: all bits back to 1, as NOR flash erases
            f = self._at(arg, 0, self._block_size)
            _forget_sector(self._offset + arg * self._block_size, self._block_size)
            f.write(self._erased)
            f.flush()
            return 0
        return 0 if op in (1, 2) else None

    # -- OTA (ESP-IDF's esp_ota_ops.c, as MicroPython's esp32_partition.c calls it): in _simota, loaded when used,
    # so a board that never updates keeps its heap (the port has this code in C, outside the heap)

    def get_next_update(self):
        """esp_ota_get_next_update_partition(self): the OTA slot after this one, else the first OTA slot."""
        return Partition(None, 4096, _ota().next_update(self._offset))

    def set_boot(self):
        """esp_ota_set_boot_partition()."""
        _ota().set_boot(self)

    @classmethod
    def mark_app_valid_cancel_rollback(cls):
        """esp_ota_mark_app_valid_cancel_rollback()."""
        _ota().mark_valid()

    def __repr__(self):
        return "<Partition type=%d, subtype=%d, address=%d, size=%d, label=%s, encrypted=%d>" % self._info


def _build():
    """What the virtual chip says about the app it started ($PIFLEET_SIM_FLASH.run): an app built with the tests'
    no-agent mark (pifleet.sim.firmware.build_app) stands for a MicroPython the agent cannot run on; there,
    `import agent…` fails with ImportError, as the agent's modules would on such a build."""
    try:
        with _open_flash("r", ".run") as f:
            words = f.read().split()
    except OSError:
        return
    if "no-agent" in words:
        import sys

        sys.modules["agent"] = None


_build()
