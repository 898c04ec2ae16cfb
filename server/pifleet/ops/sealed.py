"""A passphrase-sealed stream for backups: scrypt derives the key, AES-256-GCM seals 1 MiB chunks.

Layer: ops, pure (file objects in, file objects out). Uses the `cryptography` library, nothing home-made but the
framing. The format:

    MAGIC (16 bytes) | salt (16) | log2(n) r p (3 bytes) | nonce prefix (8) | chunk … chunk

and each chunk is `length (4 bytes, big-endian) | AES-GCM(key, prefix || counter (4 bytes), plaintext, aad)`
with aad = the whole header + the counter + one byte that is 1 on the last chunk only. The counter makes chunks
unmovable; the last-chunk flag makes a cut-short file fail instead of restoring a prefix of the archive.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

MAGIC = b"PIFLEET-SEALED1\n"
CHUNK = 1 << 20
_LOG2_N, _R, _P = 15, 8, 1  # scrypt: 32 MiB of memory, about 0.1 s on a Pi 4


class SealError(ValueError):
    """A wrong passphrase, or a damaged or cut-short file."""


def _key(passphrase: bytes, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=1 << log2_n, r=r, p=p).derive(passphrase)


def is_sealed(head: bytes) -> bool:
    return head.startswith(MAGIC)


def seal(src: BinaryIO, dst: BinaryIO, passphrase: bytes) -> None:
    """Read `src` to its end, write it sealed to `dst`."""
    salt, prefix = os.urandom(16), os.urandom(8)
    header = MAGIC + salt + bytes((_LOG2_N, _R, _P)) + prefix
    aead = AESGCM(_key(passphrase, salt, _LOG2_N, _R, _P))
    dst.write(header)
    counter, chunk = 0, src.read(CHUNK)
    while True:
        following = src.read(CHUNK) if chunk else b""
        last = not following
        nonce = prefix + struct.pack(">I", counter)
        sealed = aead.encrypt(nonce, chunk, header + struct.pack(">IB", counter, last))
        dst.write(struct.pack(">I", len(sealed)) + sealed)
        if last:
            return
        counter, chunk = counter + 1, following


def unseal(src: BinaryIO, dst: BinaryIO, passphrase: bytes) -> None:
    """Read a sealed stream from `src`, write the plaintext to `dst`; SealError if anything does not check out."""
    header = src.read(len(MAGIC) + 16 + 3 + 8)
    if len(header) < len(MAGIC) + 27 or not is_sealed(header):
        raise SealError("not a sealed pifleet backup")
    salt = header[len(MAGIC) : len(MAGIC) + 16]
    log2_n, r, p = header[len(MAGIC) + 16 : len(MAGIC) + 19]
    prefix = header[len(MAGIC) + 19 :]
    aead = AESGCM(_key(passphrase, salt, log2_n, r, p))
    counter = 0
    while True:
        size = src.read(4)
        if len(size) < 4:
            raise SealError("the backup is cut short (its last part is missing)")
        (length,) = struct.unpack(">I", size)
        if length > CHUNK + 16:
            raise SealError("the backup is damaged (a part is too long)")
        sealed = src.read(length)
        nonce = prefix + struct.pack(">I", counter)
        for last in (False, True):
            try:
                chunk = aead.decrypt(nonce, sealed, header + struct.pack(">IB", counter, last))
            except InvalidTag:
                continue
            break
        else:
            raise SealError("wrong passphrase, or the backup is damaged")
        dst.write(chunk)
        if last:
            if src.read(1):
                raise SealError("the backup is damaged (data after its last part)")
            return
        counter += 1
