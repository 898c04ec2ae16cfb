# The esp32 shim's OTA calls, as ESP-IDF's app_update component (esp_ota_ops.c) does them; loaded on first use.
#
# Layer: unix-port shim (never copied to a board). The `otadata` partition is two 4 KiB sectors, each holding one
# esp_ota_select_entry_t (ota_seq, seq_label[20], ota_state, crc = CRC-32 over ota_seq seeded 0xFFFFFFFF); the
# valid entry with the higher ota_seq selects slot (seq - 1) % number of OTA slots. The virtual chip's bootloader
# (pifleet/sim/chip.py) reads the same bytes, and tells which partition it started in $PIFLEET_SIM_FLASH.run (what
# the ESP32's MMU mapping tells esp_ota_get_running_partition()).
# (Comments, not docstrings: this shim is compiled on the board at first use, in its heap.)

import struct
from binascii import crc32

from esp32 import _forget_sector, _open_flash, _table

_SECTOR = 4096
_SELECT = "<L20sLL"  # esp_ota_select_entry_t: ota_seq, seq_label, ota_state, crc (32 bytes)
_NEW, _PENDING_VERIFY, _VALID, _INVALID, _ABORTED = 0, 1, 2, 3, 4
_OTA_MIN = 0x10


def _first(ptype, subtype):
    for info in _table():
        if info[0] == ptype and info[1] == subtype:
            return info
    return None


def _ota_slots():
    # The OTA app partitions in slot order (ota_0, ota_1 …), as get_ota_partition_count() counts them.
    slots = []
    while True:
        info = _first(0, _OTA_MIN + len(slots))
        if info is None:
            return slots
        slots.append(info)


def _default_boot():
    # find_default_boot_partition(): factory, else the first OTA slot.
    return _first(0, 0) or (_ota_slots() or [None])[0]


def _crc(seq):
    return crc32(struct.pack("<L", seq), 0xFFFFFFFF) & 0xFFFFFFFF


def _read_otadata():
    # (otadata partition info, [[seq, label, state, crc], [...]]), or (None, None) without an otadata partition.
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
    # bootloader_common_ota_select_valid(): a sequence number, not invalid or aborted, and its CRC right.
    return entry[0] != 0xFFFFFFFF and entry[2] not in (_INVALID, _ABORTED) and entry[3] == _crc(entry[0])


def _active(entries):
    # bootloader_common_get_active_otadata(): the valid entry with the higher ota_seq, or -1.
    valid = [_valid(e) for e in entries]
    if valid[0] and valid[1]:
        return 0 if entries[0][0] >= entries[1][0] else 1
    return 0 if valid[0] else 1 if valid[1] else -1


def _power_cut_here(f):
    # Tests cut the power between the erase of an otadata sector and the write of its entry (the window a real
    # power loss can hit during set_boot) by creating $PIFLEET_SIM_FLASH.cut: the chip dies as by kill -9.
    try:
        _open_flash("r", ".cut").close()
    except OSError:
        return
    import os
    import time

    f.flush()
    print("power cut in the middle of the otadata write")
    os.system("kill -KILL $PPID")  # MicroPython has no os.kill: through the shell, as machine.py's _die_by
    time.sleep(5)


def _erase(f, offset, size):
    # All bits back to 1, in small pieces (the port erases in C, taking nothing from the Python heap).
    _forget_sector(offset, size)
    piece = b"\xff" * 256
    f.seek(offset)
    for _ in range(size // 256):
        f.write(piece)


def _rewrite(info, entries, seq, sector):
    # rewrite_ota_seq(): the entry gets seq and its CRC; its sector is erased and the 32 bytes written.
    entry = entries[sector]
    entry[0] = seq
    entry[3] = _crc(seq)
    with _open_flash("r+b") as f:
        _erase(f, info[2] + sector * _SECTOR, _SECTOR)
        _power_cut_here(f)
        f.seek(info[2] + sector * _SECTOR)
        f.write(struct.pack(_SELECT, *entry))  # (the erase above forgot the sector the esp32 shim kept)


def running():
    # The partition the virtual bootloader started (its offset in $PIFLEET_SIM_FLASH.run), else the default.
    try:
        with _open_flash("r", ".run") as f:
            offset = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return _default_boot()
    for info in _table():
        if info[0] == 0 and info[2] == offset:
            return info
    return _default_boot()


def boot_partition():
    # esp_ota_get_boot_partition().
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


def next_update(offset):
    # esp_ota_get_next_update_partition(): the OTA slot after the one at offset, else the first OTA slot.
    slots = _ota_slots()
    if not slots:
        raise OSError(-261)  # ESP_ERR_NOT_FOUND
    for n, info in enumerate(slots):
        if info[2] == offset:
            return slots[(n + 1) % len(slots)]
    return slots[0]


def set_boot(part):
    # esp_ota_set_boot_partition(): the image must verify; factory erases otadata; an OTA slot gets the next
    # sequence number that selects it, in the other otadata sector, its state ESP_OTA_IMG_NEW (rollback on).
    if part._info[0] != 0:
        raise OSError(-258)  # ESP_ERR_INVALID_ARG
    head = bytearray(1)
    part.readblocks(0, head)
    if head[0] != 0xE9:
        raise OSError(0x1503)  # ESP_ERR_OTA_VALIDATE_FAILED
    info, entries = _read_otadata()
    if info is None:
        raise OSError(-261)
    if part._info[1] == 0:  # factory: "just format ota info partition"
        with _open_flash("r+b") as f:
            _erase(f, info[2], info[3])
        return
    slots = _ota_slots()
    slot = part._info[1] - _OTA_MIN
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


def mark_valid():
    # esp_ota_mark_app_valid_cancel_rollback(): the active entry becomes VALID (no rollback at the next reset);
    # OSError when the board runs without OTA data (the port raises what ESP-IDF returns).
    info, entries = _read_otadata()
    if info is None:
        raise OSError(-261)  # ESP_ERR_NOT_FOUND
    active = _active(entries)
    if active < 0 or not _ota_slots():
        raise OSError(-1)  # ESP_FAIL: "Running firmware is factory"
    if entries[active][2] != _VALID:
        entries[active][2] = _VALID
        _rewrite(info, entries, entries[active][0], active)
