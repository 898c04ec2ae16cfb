"""`machine` for the virtual ESP32 (MicroPython unix port) and for CPython process targets.

Layer: unix-port shim. It imitates the parts of the ESP32 port's machine module the agent and the role
modules use, with observable outputs and settable inputs (see _simio). Never copied to a real board.
"""

import errno
import os
import sys
import time

import _simio

_levels = {}  # pin id -> last level written, to log changes only

# The plain ESP32's pin table in MicroPython's port (ports/esp32/machine_pin.h), one letter per GPIO 0-39:
# "-" no such pin (Pin(n) is ValueError("invalid pin")), "p" a pin, "a" a pin with an ADC (ADC1: 32-39, ADC2:
# the others, which fail while Wi-Fi is on). 6-11 exist there (the flash's pins, see Pin.init), 20 too (some
# packages have it). Strings, not sets: the shim's heap counts against the virtual board's.
_GPIOS = "apapapppppppaaaapppppppp-aaa----aaaaaaaa"


def _die_by(name):
    """End the process by the signal `name` (USR1: the watchdog, USR2: machine.reset()), whatever the main thread
    is doing: the virtual chip sees the reset and boots again (pifleet/sim/chip.py, RESETS).

    MicroPython has neither os._exit nor os.kill, sys.exit() in the unix port's script ends at its REPL, and an
    exception raised in a scheduled callback is only printed: the signal is sent through the shell ($PPID of
    `sh -c` is this process).
    """
    if sys.implementation.name == "micropython":
        os.system("kill -%s $PPID" % name)
        time.sleep(1)
        os.system("kill -KILL $PPID")  # should never be reached
    else:
        import signal

        os.kill(os.getpid(), getattr(signal, "SIG" + name))


def _die_by_watchdog():
    _die_by("USR1")


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, id, mode=-1, pull=-1, *, value=None):
        if not isinstance(id, int) or not 0 <= id < 40 or _GPIOS[id] == "-":
            raise ValueError("invalid pin")  # ports/esp32/machine_pin.c: not in the ESP32's pin table
        self.id = id
        self._mode = self.IN
        self._pull = None
        self.init(mode, pull, value=value)

    def init(self, mode=-1, pull=-1, *, value=None):
        if mode != -1:
            if self.id >= 34 and mode in (self.OUT, self.OPEN_DRAIN):
                raise ValueError("pin can only be input")  # GPIO_FIRST_NON_OUTPUT on the ESP32
            if 6 <= self.id <= 11:
                # The port lets you, and the board dies: the pin leaves the SPI flash, the next instruction
                # fetch fails, the board resets and boot.py does it again (a crash loop). A test must see it.
                raise RuntimeError("GPIO %d drives the SPI flash: a real ESP32 crash-loops here" % self.id)
            self._mode = mode
        if pull != -1:
            self._pull = pull
        if value is not None:
            self.value(value)

    def _is_output(self):
        return self._mode in (self.OUT, self.OPEN_DRAIN)

    def value(self, v=None):
        if v is None:
            if self._is_output():
                return _levels.get(self.id, 0)
            default = 1 if self._pull == self.PULL_UP else 0
            return int(_simio.read_input("pins", self.id, default))
        level = 1 if v else 0
        if _levels.get(self.id) != level:
            _levels[self.id] = level
            _simio.log_pin(self.id, level)
        return None

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def __repr__(self):
        return "Pin(%s)" % self.id


class PWM:
    """Duty cycle changes are appended to pwm.log as `TIME_NS PIN FREQ DUTY_U16`.

    As on the ESP32 port (ports/esp32/machine_pwm.c): 16 LEDC channels (8 per speed mode), one per pin; a
    PWM on a pin that has one reuses it, deinit() gives it back, and a 17th pin gets "out of PWM channels"
    (RuntimeError since MicroPython 1.26, ValueError before); a deinitialised PWM is inactive."""

    CHANNELS = 16

    def __init__(self, pin, freq=5000, duty_u16=0):
        if not isinstance(pin, Pin):
            pin = Pin(pin)
        if pin.id not in _pwm_channels and len(_pwm_channels) >= self.CHANNELS:
            raise RuntimeError("out of PWM channels:%d" % self.CHANNELS)
        _pwm_channels[pin.id] = True
        self.pin = pin
        self._freq = freq
        self._duty = duty_u16
        self._active = True
        self._log()

    def _log(self):
        _simio.log_line("pwm.log", "%d %s %d %d" % (time.time_ns(), self.pin.id, self._freq, self._duty))

    def _check(self):
        if not self._active:
            raise RuntimeError("PWM is inactive")

    def freq(self, value=None):
        self._check()
        if value is None:
            return self._freq
        self._freq = value
        self._log()

    def duty_u16(self, value=None):
        self._check()
        if value is None:
            return self._duty
        self._duty = value
        self._log()

    def deinit(self):
        if self._active:
            self.duty_u16(0)
            self._active = False
            _pwm_channels.pop(self.pin.id, None)


_pwm_channels = {}  # pin id -> claimed, for the whole board (the port's chans[][] table)


class ADC:
    """Reads microvolts from inputs.json {"adc": {"34": 750000}}; a list there ([740000, 760000]) gives its
    values in turn, one per reading: the noise of a real ESP32's ADC."""

    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    _FULL_SCALE_UV = 3300000

    def __init__(self, pin, *, atten=None):
        if _GPIOS[pin.id] != "a":
            raise ValueError("invalid pin for ADC")  # ADC1: 32-39; ADC2 (fails while Wi-Fi is on): the rest
        self.pin = pin
        self._atten = atten

    def atten(self, value):
        self._atten = value

    def read_uv(self):
        value = _simio.read_input("adc", self.pin.id, 0)
        if isinstance(value, list):
            self._n = getattr(self, "_n", -1) + 1
            value = value[self._n % len(value)] if value else 0
        return int(value)

    def read_u16(self):
        return min(65535, self.read_uv() * 65535 // self._FULL_SCALE_UV)


class I2C:
    """The ESP32 port's hardware I2C API on one virtual bus shared by every I2C/SoftI2C of the board.

    Devices come from inputs.json {"i2c": {"ADDRESS": {"chip": "bme280", ...}}}, re-read at every transfer
    (so a test can plug a chip in or out while the board runs); a chip keeps its registers for as long as the
    board runs (see _bme280sim). An address nobody answers gives OSError(ENODEV), as on the ESP32 port.
    """

    def __init__(self, id=0, *, scl=None, sda=None, freq=400000, timeout=50000):
        if id not in (0, 1, -1):  # -1: SoftI2C
            raise ValueError("I2C(%s) doesn't exist" % id)
        import _bme280sim  # the chip models: loaded with the bus, not at the first transfer (heap fragments)

        self._chip_model = _bme280sim.BME280
        self.id = id
        self._pins = (scl, sda)
        self._freq = freq
        self._pointer = {}  # address -> register pointer for plain readfrom()

    def init(self, *, scl=None, sda=None, freq=400000, timeout=50000):
        self._pins = (scl, sda)
        self._freq = freq

    def scan(self):
        return sorted(int(address) for address, entry in _simio.read_kind("i2c").items() if entry)

    def _device(self, addr):
        entry = _simio.read_input("i2c", addr, None)
        if not entry or entry.get("chip") != "bme280":
            raise OSError(errno.ENODEV)
        chip = _i2c_chips.get(addr)
        if chip is None:
            chip = _i2c_chips[addr] = self._chip_model(lambda: _simio.read_input("i2c", addr, None))
        return chip

    def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
        return self._device(addr).read(memaddr, nbytes)

    def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
        data = self._device(addr).read(memaddr, len(buf))
        for i in range(len(buf)):
            buf[i] = data[i]

    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        self._device(addr).write(memaddr, bytes(buf))

    def writeto(self, addr, buf, stop=True):
        chip = self._device(addr)
        if len(buf):
            self._pointer[addr] = buf[0]
            if len(buf) > 1:
                chip.write(buf[0], bytes(buf[1:]))
        return len(buf)

    def readfrom(self, addr, nbytes, stop=True):
        return self._device(addr).read(self._pointer.get(addr, 0), nbytes)

    def readfrom_into(self, addr, buf, stop=True):
        data = self.readfrom(addr, len(buf))
        for i in range(len(buf)):
            buf[i] = data[i]


class SoftI2C(I2C):
    """Bit-banged I2C on any two pins: the same API (and the same virtual bus) as I2C."""

    def __init__(self, scl, sda, *, freq=400000, timeout=50000):
        super().__init__(-1, scl=scl, sda=sda, freq=freq, timeout=timeout)


_i2c_chips = {}  # address -> chip model


class WDT:
    """A watchdog: if feed() is not called within `timeout` ms, the process ends by SIGUSR1.

    The runner reads that as "reset by the watchdog" (returncode -10), distinct from a clean exit (0), a
    crash (1) and a power cut (SIGKILL, -9). PIFLEET_SIM_WDT_MS, when set, shortens the timeout (tests: a wedged
    board resets in seconds, not after the agent's 30 s). As on the ESP32 it cannot be stopped.

    On a virtual chip (PIFLEET_SIM_WDT_CHIP, set by pifleet/sim/board.py) the chip is the watchdog, as the ESP32's
    is hardware: a feed rewrites io/wdt (its timeout), and the chip ends the interpreter when the file has not
    changed for that long. Elsewhere (the shims run directly) a thread of this process watches. A thread costs the
    board at every collection: the unix port stops each of its threads by a signal to scan its stack.
    """

    def __init__(self, id=0, timeout=5000):
        cap = os.getenv("PIFLEET_SIM_WDT_MS")
        self._timeout = min(timeout, int(cap)) if cap else timeout
        self._file = None
        if os.getenv("PIFLEET_SIM_WDT_CHIP"):
            self._text = "%d\n" % self._timeout
            self._file = open(_simio._path("wdt"), "w")
            self.feed()
            return
        import _thread

        self._fed = self._now()
        _thread.start_new_thread(self._watch, ())

    @staticmethod
    def _now():
        return time.ticks_ms() if hasattr(time, "ticks_ms") else int(time.monotonic() * 1000)

    def feed(self):
        f = self._file
        if f is None:
            self._fed = self._now()
            return
        f.seek(0)
        f.write(self._text)
        if sys.implementation.name != "micropython":
            f.flush()  # CPython buffers it

    def _watch(self):
        # asleep until the timeout after the last feed known, then looks again: a board's thread that woke every
        # 50 ms took a tenth of its CPU in a rollout (the interpreter's lock, and its wake-ups), for nothing
        while True:
            left = self._timeout - (self._now() - self._fed)
            if left < 0:
                print("WDT: not fed for %d ms, resetting" % self._timeout)
                _die_by_watchdog()
                return
            time.sleep((left + 1) / 1000)


class Timer:
    """A periodic or one-shot timer whose callback runs on a thread of its own (the ESP32's run from its timer
    interrupt, through the scheduler); deinit() stops it. main.py feeds the watchdog with one at the REPL."""

    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id=0, **kw):
        self._generation = 0
        if kw:
            self.init(**kw)

    def init(self, *, mode=PERIODIC, period=1000, callback=None, freq=None):
        import _thread

        self.deinit()
        generation = self._generation
        period_s = 1 / freq if freq else period / 1000

        def tick():
            while self._generation == generation:
                time.sleep(period_s)
                if self._generation != generation:
                    return
                if callback is not None:
                    callback(self)
                if mode == Timer.ONE_SHOT:
                    return

        _thread.start_new_thread(tick, ())

    def deinit(self):
        self._generation += 1


class RTC:
    """The real-time clock: the virtual board's is its host's clock (time.time()), so setting it changes nothing
    here; what was set is kept to be read back. memory() is not offered (the agent keeps its file, boots.json)."""

    _set = None

    def __init__(self, id=0):
        pass

    def datetime(self, value=None):
        if value is None:
            t = time.gmtime()
            return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)
        RTC._set = tuple(value)
        return None

    def init(self, value):
        self.datetime(value)


# machine.reset_cause() values of the ESP32 port
PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
_CAUSES = {"power": PWRON_RESET, "soft": SOFT_RESET, "wdt": WDT_RESET}


def reset():
    """The chip resets and boots again (the virtual chip does it when the interpreter ends by SIGUSR2);
    reset_cause() then says SOFT_RESET, as the ESP32 port does after a software reset."""
    print("machine.reset()")
    _die_by("USR2")


def soft_reset():
    reset()


def reset_cause():
    """Why the chip started: PWRON_RESET, SOFT_RESET (machine.reset()) or WDT_RESET (the virtual chip tells)."""
    return _CAUSES.get(os.getenv("PIFLEET_SIM_RESET_CAUSE") or "power", PWRON_RESET)


def unique_id():
    """The chip's base MAC (the ESP32 port returns the eFuse MAC), as the network shim's station MAC."""
    mac = os.getenv("PIFLEET_SIM_MAC")
    if mac:
        return bytes(int(mac[i : i + 2], 16) for i in range(0, 12, 2))
    ip = os.getenv("PIFLEET_SIM_IP") or "127.0.0.2"
    return bytes([0x24, 0x0A] + [int(part) for part in ip.split(".")])


def freq(value=None):
    return 240000000


def idle():
    time.sleep(0.001)
