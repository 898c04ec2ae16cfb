"""OSCORE (RFC 8613) security contexts of the master, one per paired board, for aiocoap.

Layer: gateway (aiocoap adapter). A board's context derives from the 32-byte secret flashing or adoption
gave it. The salt is "pifleet-oscore-1", the master's sender id is empty, and the board's is its `oscore_id`.
aiocoap protects and unprotects with it: OscoreSiteWrapper finds it by kid for a board's requests, and
client_credentials map the board's address to it for the master's commands. One context serves both
directions, so sequence numbers are shared.

The sender sequence number survives restarts: a mark ahead of the numbers in use is written to
DATA/oscore/DEVICE-KEYID.seq before they are used, so a restart skips numbers and never repeats one. The
replay window is not kept. After a restart the board's first request is answered with an Echo challenge
(Appendix B.1.2), unless the keys were never used (no sequence file yet).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from aiocoap import oscore

SALT = b"pifleet-oscore-1"
_LOOKAHEAD = 64  # sequence numbers reserved per write of the mark


def key_id(secret: bytes) -> str:
    """Names the keying material without revealing it (file names, logs)."""
    return hashlib.sha256(b"pifleet-key-id:" + secret).hexdigest()[:12]


class BoardContext(oscore.CanProtect, oscore.CanUnprotect, oscore.SecurityContextUtils):
    """The master's side of one board's pairwise context (sender id b"", recipient id = the board's)."""

    def __init__(self, device_id: str, oscore_id: bytes, secret: bytes, directory: Path) -> None:
        self.device_id = device_id
        self.alg_aead = oscore.algorithms["AES-CCM-16-64-128"]
        self.hashfun = oscore.hashfunctions["sha256"]
        self.sender_id = b""
        self.recipient_id = oscore_id
        self.id_context = None
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._seq_path = directory / f"{device_id}-{key_id(secret)}.seq"
        used = self._seq_path.exists()
        self.sender_sequence_number = int(self._seq_path.read_text()) if used else 0
        self._persisted = self.sender_sequence_number
        self.recipient_replay_window = oscore.ReplayWindow(32, lambda: None)
        if used:
            self.echo_recovery = secrets.token_bytes(8)  # the window is unknown: challenge the first request
        else:
            self.recipient_replay_window.initialize_empty()  # keys never used: nothing can be replayed
            self.echo_recovery = None
        self.derive_keys(SALT, secret)
        if not used:
            self._persist(0)

    def _persist(self, mark: int) -> None:
        tmp = self._seq_path.with_suffix(".new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(str(mark))
        os.replace(tmp, self._seq_path)
        self._persisted = mark

    def post_seqnoincrease(self) -> None:
        # called by aiocoap after it took a number: the mark must stay ahead of every number in use
        if self.sender_sequence_number >= self._persisted:
            self._persist(self.sender_sequence_number + _LOOKAHEAD)

    def forget(self) -> None:
        """The board was revoked: its sequence file goes with it (new keys will get a new one)."""
        self._seq_path.unlink(missing_ok=True)
