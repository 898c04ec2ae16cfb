"""`esp32` for the virtual ESP32: `Partition` over the board's flash file, like the ESP32 port's, OTA included.

Layer: unix-port shim (never copied to a board). The flash file is $PIFLEET_SIM_FLASH, the image the virtual
chip's ROM loader writes with esptool; the partition table is read from 0x8000 as the ESP-IDF bootloader does.
So a littlefs mounted on Partition("vfs") reads and writes the very bytes esptool wrote and reads back.
Only what MicroPython's esp32.Partition offers is here: find, info, readblocks, writeblocks, ioctl, and the OTA
calls (BOOT, RUNNING, get_next_update, set_boot, mark_app_valid_cancel_rollback) as ESP-IDF's app_update
component does them on the `otadata` partition: two 4 KiB sectors, each holding one esp_ota_select_entry_t
(ota_seq, seq_label[20], ota_state, crc = CRC-32 over ota_seq seeded 0xFFFFFFFF), the higher valid ota_seq
selecting slot (seq - 1) % number of OTA slots. The virtual chip's bootloader (pifleet/sim/chip.py) reads the
same bytes, and tells which partition it started in $PIFLEET_SIM_FLASH.run (what the ESP32's MMU mapping tells
esp_ota_get_running_partition()). A table without a `vfs` or `ffat` partition gets one from the end of the last
partition to the end of flash, as the ESP32 port's main.c registers it (MicroPython's OTA tables have none).
"""

import os
import struct
from binascii import crc32

_TABLE_OFFSET = 0x8000
_TABLE_SIZE = 0xC00
_ENTRY = "<2sBBLL16sL"
_SECTOR = 4096
_SELECT = "<L20sLL"  # esp_ota_select_entry_t: ota_seq, seq_label, ota_state, crc (32 bytes)
_NEW, _PENDING_VERIFY, _VALID, _INVALID, _ABORTED, _UNDEFINED = 0, 1, 2, 3, 4, 0xFFFFFFFF
_OTA_MIN = 0x10


_table_cache = None


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


def _first(ptype, subtype):
    for info in _table():
        if info[0] == ptype and info[1] == subtype:
            return info
    return None


def _ota_slots():
    """The OTA app partitions in slot order (ota_0, ota_1 …), as get_ota_partition_count() counts them."""
    slots = []
    while True:
        info = _first(0, _OTA_MIN + len(slots))
        if info is None:
            return slots
        slots.append(info)


def _default_boot():
    """find_default_boot_partition(): factory, else the first OTA slot."""
    return _first(0, 0) or (_ota_slots() or [None])[0]


def _crc(seq):
    return crc32(struct.pack("<L", seq), 0xFFFFFFFF) & 0xFFFFFFFF


def _read_otadata():
    """(otadata partition info, [[seq, label, state, crc], [...]]), or (None, None) without an otadata partition."""
    info = _first(1, 0x00)
    if info is None:
        return None, None
    entries = []
    with _open_flash("rb") as f:
        for sector in (0, 1):
            f.seek(info[2] + sector * _SECTOR)
            entries.append(list(struct.unpack(_SELECT, f.read(32))))
    return info, entries


def _valid(entry):
    """bootloader_common_ota_select_valid(): a sequence number, not invalid or aborted, and its CRC right."""
    return entry[0] != 0xFFFFFFFF and entry[2] not in (_INVALID, _ABORTED) and entry[3] == _crc(entry[0])


def _active(entries):
    """bootloader_common_get_active_otadata(): the valid entry with the higher ota_seq, or -1."""
    valid = [_valid(e) for e in entries]
    if valid[0] and valid[1]:
        return 0 if entries[0][0] >= entries[1][0] else 1
    return 0 if valid[0] else 1 if valid[1] else -1


def _rewrite(info, entries, seq, sector):
    """rewrite_ota_seq(): the entry gets seq and its CRC; its sector is erased and the 32 bytes written."""
    entry = entries[sector]
    entry[0] = seq
    entry[3] = _crc(seq)
    with _open_flash("r+b") as f:
        f.seek(info[2] + sector * _SECTOR)
        f.write(b"\xff" * _SECTOR)
        f.seek(info[2] + sector * _SECTOR)
        f.write(struct.pack(_SELECT, *entry))


def _running():
    """The partition the virtual bootloader started (its offset in $PIFLEET_SIM_FLASH.run), else the default."""
    try:
        with _open_flash("r", ".run") as f:
            offset = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return _default_boot()
    for info in _table():
        if info[0] == 0 and info[2] == offset:
            return info
    return _default_boot()


def _boot_partition():
    """esp_ota_get_boot_partition()."""
    info, entries = _read_otadata()
    slots = _ota_slots()
    if info is None:
        return None
    invalid = [e[0] == 0xFFFFFFFF or e[2] in (_INVALID, _ABORTED) for e in entries]
    if (invalid[0] and invalid[1]) or not slots:
        return _default_boot()
    active = _active(entries)
    if active < 0:
        return _default_boot()
    return slots[(entries[active][0] - 1) % len(slots)]


class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0
    TYPE_DATA = 1

    def __init__(self, id, block_size=4096, _info=None):
        if _info is None:
            if id == Partition.RUNNING:
                _info = _running()
            elif id == Partition.BOOT:
                _info = _boot_partition()
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
        # allocates once here, never per call, so the board's free heap stays what a real board would show.
        self._erased = b"\xff" * block_size

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

    def readblocks(self, block_num, buf, offset=0):
        f = self._at(block_num, offset, len(buf))
        f.readinto(buf)

    def writeblocks(self, block_num, buf, offset=None):
        if offset is None:  # the port erases whole blocks first when no offset is given
            for n in range(len(buf) // self._block_size):
                self.ioctl(6, block_num + n)
            offset = 0
        f = self._at(block_num, offset, len(buf))
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
            f.write(self._erased)
            f.flush()
            return 0
        return 0 if op in (1, 2) else None

    # -- OTA (ESP-IDF's esp_ota_ops.c, as MicroPython's esp32_partition.c calls it) ---------------------------

    def get_next_update(self):
        """esp_ota_get_next_update_partition(self): the OTA slot after this one, else the first OTA slot."""
        slots = _ota_slots()
        if not slots:
            raise OSError(-261)  # ESP_ERR_NOT_FOUND
        for n, info in enumerate(slots):
            if info[2] == self._offset:
                return Partition(None, 4096, slots[(n + 1) % len(slots)])
        return Partition(None, 4096, slots[0])

    def set_boot(self):
        """esp_ota_set_boot_partition(): the image must verify; factory erases otadata; an OTA slot gets the next
        sequence number that selects it, in the other otadata sector, its state ESP_OTA_IMG_NEW (rollback on)."""
        if self._info[0] != 0:
            raise OSError(-258)  # ESP_ERR_INVALID_ARG
        head = bytearray(1)
        self.readblocks(0, head)
        if head[0] != 0xE9:
            raise OSError(0x1503)  # ESP_ERR_OTA_VALIDATE_FAILED
        info, entries = _read_otadata()
        if info is None:
            raise OSError(-261)
        if self._info[1] == 0:  # factory: "just format ota info partition"
            with _open_flash("r+b") as f:
                f.seek(info[2])
                f.write(b"\xff" * info[3])
            return
        slots = _ota_slots()
        slot = self._info[1] - _OTA_MIN
        active = _active(entries)
        if active >= 0:
            seq = entries[active][0]
            i = 0
            while seq > (slot + 1) % len(slots) + i * len(slots):
                i += 1
            sector = (~active) & 1
            entries[sector][2] = _NEW
            _rewrite(info, entries, (slot + 1) % len(slots) + i * len(slots), sector)
        else:
            entries[0][2] = _NEW
            _rewrite(info, entries, slot + 1, 0)

    @classmethod
    def mark_app_valid_cancel_rollback(cls):
        """esp_ota_mark_app_valid_cancel_rollback(): the active entry becomes VALID (no rollback at the next
        reset); OSError when the board runs without OTA data (the port raises what ESP-IDF returns)."""
        info, entries = _read_otadata()
        if info is None:
            raise OSError(-261)  # ESP_ERR_NOT_FOUND
        active = _active(entries)
        if active < 0 or not _ota_slots():
            raise OSError(-1)  # ESP_FAIL: "Running firmware is factory"
        if entries[active][2] != _VALID:
            entries[active][2] = _VALID
            _rewrite(info, entries, entries[active][0], active)

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
