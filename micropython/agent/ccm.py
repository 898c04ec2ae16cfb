"""AES-CCM (RFC 3610) as COSE's AES-CCM-16-64-128: 16-byte key, 13-byte nonce, 8-byte tag, L = 2.

Layer: device side, pure. Built on one AES block encryption (port.aes_ecb_encryptor: cryptolib on MicroPython),
because cryptolib has no CCM mode: CBC-MAC over B0, the AAD and the plaintext gives the tag, CTR mode with
counter blocks A1, A2 … encrypts the data, and A0's key stream block encrypts the tag. The plaintext goes into
the CBC-MAC in the same pass over the data as the CTR mode (its blocks are the counter blocks'). The three 16-byte
work blocks are allocated once per key; a message allocates only its output.
"""

from agent.port import aes_ecb_encryptor, const

TAG_LEN = const(8)
NONCE_LEN = const(13)
_MAX_LEN = const(0xFFFF)  # L = 2 bytes of message length

# B0 flags: Adata (0x40) | (M - 2) / 2 << 3 with M = 8 | L - 1 = 1. A counter block's flags are only L - 1.
_B0_FLAGS = const(0x59)
_B0_FLAGS_NO_AAD = const(0x19)
_CTR_FLAGS = const(0x01)


class Ccm:
    """AES-CCM-16-64-128 under one key. Not re-entrant: one message at a time (the agent has one loop)."""

    __slots__ = ("_enc", "_x", "_a", "_s")

    def __init__(self, key):
        self._enc = aes_ecb_encryptor(key)
        self._x = bytearray(16)  # CBC-MAC state
        self._a = bytearray(16)  # counter block
        self._s = bytearray(16)  # key stream block

    def encrypt(self, nonce, aad, plaintext):
        """ciphertext + tag (a bytearray of len(plaintext) + 8)."""
        n = len(plaintext)
        if n > _MAX_LEN:
            raise ValueError("message too long for CCM with L = 2")
        out = bytearray(n + TAG_LEN)
        self._mac(nonce, aad, n)
        self._ctr(nonce, plaintext, out, n, plaintext)
        s, x = self._s, self._x
        self._counter(nonce, 0)
        self._enc(self._a, s)
        for i in range(TAG_LEN):  # T XOR S0 behind the ciphertext: T the CBC-MAC left in x, S0 = E(A0)
            out[n + i] = x[i] ^ s[i]
        return out

    def decrypt(self, nonce, aad, data):
        """The plaintext (a bytearray), or None when data is too short or its tag does not verify."""
        n = len(data) - TAG_LEN
        if n < 0 or n > _MAX_LEN:
            return None
        out = bytearray(n)
        self._mac(nonce, aad, n)
        self._ctr(nonce, data, out, n, out)
        s = self._s
        self._counter(nonce, 0)
        self._enc(self._a, s)
        x = self._x
        diff = 0
        for i in range(TAG_LEN):  # look at every byte: the time taken does not say where a forged tag differs
            diff |= data[n + i] ^ x[i] ^ s[i]
        return None if diff else out

    def _counter(self, nonce, i):
        a = self._a
        a[0] = _CTR_FLAGS
        a[1:14] = nonce
        a[14] = i >> 8
        a[15] = i & 0xFF

    def _ctr(self, nonce, src, dst, n, plaintext):
        """dst[:n] = src[:n] XOR the key stream of A1, A2 …, and plaintext[:n] (src or dst) into the CBC-MAC: its
        last block zero-padded, which XOR leaves as it is."""
        enc, a, s, x = self._enc, self._a, self._s, self._x
        self._counter(nonce, 1)
        pos = 0
        block = 1
        while pos < n:
            enc(a, s)
            end = min(pos + 16, n)
            for i in range(pos, end):
                dst[i] = src[i] ^ s[i - pos]
                x[i - pos] ^= plaintext[i]
            enc(x, x)
            pos = end
            block += 1
            a[14] = block >> 8
            a[15] = block & 0xFF

    def _mac(self, nonce, aad, n):
        """CBC-MAC of B0 and the length-prefixed AAD for n bytes of data, in self._x (_ctr adds the data)."""
        x, enc = self._x, self._enc
        x[0] = _B0_FLAGS if aad else _B0_FLAGS_NO_AAD
        x[1:14] = nonce
        x[14] = n >> 8
        x[15] = n & 0xFF
        enc(x, x)
        if aad:
            # l(a) < 2^16 - 2^8: two bytes of length, then the AAD, zero-padded to the block.
            la = len(aad)
            x[0] ^= la >> 8
            x[1] ^= la & 0xFF
            self._absorb(aad, 2)

    def _absorb(self, data, start):
        """XOR data into the CBC-MAC state from byte `start` of the current block, encrypting full blocks.

        The last block is padded with zeros, which XOR leaves as they are.
        """
        x, enc = self._x, self._enc
        j = start
        for byte in data:
            x[j] ^= byte
            j += 1
            if j == 16:
                enc(x, x)
                j = 0
        if j:
            enc(x, x)
