"""The agent's edge under CPython (process targets, the agent's tests): what agent/port.py gives a board, made of
CPython's parts. A board never loads this module: its code would only take heap there.

Layer: device side, lowest (with agent/port.py, which re-exports these names). No protocol or application logic.
"""

import asyncio
import signal
import sys
import time
import traceback

# SIGINT (Ctrl-C) is how a board's agent is stopped in order: KeyboardInterrupt, outputs off, deregistered.
# A process started from a background shell inherits SIGINT as ignored, and CPython keeps it so (MicroPython
# installs its own handler): take it back, or `pifleet process` targets and CPython boards cannot stop.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def const(value):
    return value


def ticks_ms():
    return time.monotonic_ns() // 1_000_000


def ticks_diff(a, b):
    return a - b


def ticks_add(a, b):
    return a + b


def print_exception(exc):
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stdout)
    from agent import port

    if port.LOG is not None:  # for the master too (agent/log.py)
        port.LOG.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))


async def wait_for_ms(aw, ms):
    return await asyncio.wait_for(aw, ms / 1000)


async def sleep_ms(ms):
    await asyncio.sleep(ms / 1000)


def collect():
    """CPython manages its own memory."""


async def pause():
    """CPython manages its own memory."""


def reset_loop():
    """CPython's asyncio.run() always starts from a fresh loop: nothing to forget."""


async def recvfrom(sock, size):
    return await asyncio.get_running_loop().sock_recvfrom(sock, size)


def aes_cbc_decrypt(key, iv, data):
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return decryptor.update(data) + decryptor.finalize()


def aes_ecb_encryptor(key):
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()

    def encrypt(src, dst):
        dst[:16] = encryptor.update(src)

    return encrypt
