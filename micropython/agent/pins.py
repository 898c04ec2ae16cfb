"""Which GPIO of which chip a role module may use, and for what: one allow-list per chip (ESP32, -S2, -S3, -C3).

Layer: device-side library, pure (no hardware; `machine` is never imported here). Role modules check their
configuration with check_config() in setup() (imported there, and forgotten after it, see below); the master
loads this same file under CPython (pifleet.devices.pins) to check a role's configuration, so there is one
list and one wording.

A capability declares a pin in its CONFIG as {"type": "integer", "pin": USE}, USE one of
    "out"  drives the pin (relay, motor, PWM; also a data line both ends drive: DHT22, 1-Wire, I2C)
    "in"   only reads it (a button)
    "adc"  reads it through ADC1 (ADC2 cannot be read while Wi-Fi is on)

One digit per GPIO number, from the chips' datasheets and MicroPython's ports/esp32 pin tables:
    0  no such GPIO on the chip (or not bonded out on its modules): the port raises ValueError
    1  the SPI flash or PSRAM: driving it crash-loops the board
    2  the serial console or USB: the board's REPL and its adoption code would be lost
    3  input only       4  input only, ADC1          5  input only, strapping
    6  input/output     7  input/output, ADC1        8  input/output, strapping   9  … strapping, ADC1
A strapping pin is usable, with a warning: an external pull on it at reset can keep the board from booting.
Notes: ESP32 GPIO 20 exists on some packages only (not on WROOM/WROVER modules); 16 and 17 carry the PSRAM of
WROVER modules (their SPIRAM image refuses them itself). S2/S3 GPIO 26-32 are the flash and PSRAM; S3 33-37
carry the octal flash/PSRAM of the common N8R8/N16R8 modules. C3 GPIO 11 is the flash's supply (VDD_SPI)
unless an eFuse was burnt.

Heap: digits and long strings, few names (every short string and name is a qstr, kept for good in a pool that
grows in doubling steps); check_config() drops the module from sys.modules once setup has used it.
"""

import sys

_CHIPS = (
    "ESP32 8282681111118668666606660666000077444444",
    "ESP32S2 87777777777666666662260000111111166666666662285",
    "ESP32S3 8779777777766666666226000011111111111166666228866",
    "ESP32C3 7797766688611111112222",
)
_WHY = (
    "does not exist",
    "drives the SPI flash/PSRAM: using it crash-loops the board",
    "is the serial console/USB: the REPL and the adoption code would be lost",
    "is not an ADC1 pin (ADC2 cannot be read while Wi-Fi is on)",
    "is input-only",
    "is a strapping pin: a pull on it at reset can keep the board from booting",
)


def chip():
    """This board's chip: 'ESP32', 'ESP32S2', 'ESP32S3', 'ESP32C3', or '' for one without a list here (C6,
    H2 …). The last word of sys.implementation._machine, os.uname().machine's text ('Generic ESP32 module with
    ESP32', '… with ESP32-S3'); ESP32-D2WD and -UNICORE are plain ESP32s; a virtual board (the unix port:
    'linux [GCC …] version') and CPython stand in for a plain ESP32."""
    name = getattr(sys.implementation, "_machine", "").split()
    name = name[-1].upper().replace("-", "") if name else ""
    if name[:5] != "ESP32":
        return "ESP32"
    for entry in _CHIPS:
        if entry.split()[0] == name:
            return name
    return "" if name[5:6] in ("S", "C", "H", "P") else "ESP32"


def _rule(pin, name):
    """(chip name, digit) for GPIO `pin`; digit None for a chip without a list."""
    name = name or chip()
    for entry in _CHIPS:
        digits = entry.split()
        if digits[0] == name:
            digits = digits[1]
            return name, int(digits[pin]) if 0 <= pin < len(digits) else 0
    return name, None


def problem(pin, mode, name=None):
    """None if GPIO `pin` (an int) of the chip `name` (default: this board's) can serve `mode` (the CONFIG's
    USE: 'out', 'in', 'adc'), else why not, as a sentence. (Argument names that are qstrs already.)"""
    name, digit = _rule(pin, name)
    if digit is None:
        return None  # a chip we have no list for: the port's own checks are all there is
    why = digit if digit < 3 else 3 if mode == "adc" and digit not in (4, 7, 9) else None
    if why is None and mode == "out" and digit < 6:
        why = 4
    return None if why is None else "GPIO %s of the %s %s" % (pin, name, _WHY[why])


def warning(pin, name=None):
    """A sentence when GPIO `pin` is usable but a strapping pin of the chip, else None."""
    name, digit = _rule(pin, name)
    return "GPIO %s of the %s %s" % (pin, name, _WHY[5]) if digit in (5, 8, 9) else None


def check_config(cfg, config):
    """Every pin a capability's configuration names (defaults included) against the CONFIG it declares:
    ValueError naming the key and why; a strapping pin is printed. Then this module is forgotten: a role module
    imports it inside setup() only, so its code is not kept in the heap once the board runs (the next module's
    setup loads it again)."""
    try:
        for key in config:
            mode = config[key].get("pin")
            pin = cfg.get(key, config[key].get("default"))
            if mode is not None and pin is not None:
                why = problem(pin, mode)
                if why:
                    raise ValueError(key + ": " + why)
                why = warning(pin)
                if why:
                    print(why)
    finally:
        from agent.port import forget  # here, not at the top: the master loads this file without the agent

        forget("pins")
