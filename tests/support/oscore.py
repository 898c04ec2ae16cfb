"""An OSCORE context (RFC 8613) with keys a test chooses — a stranger's, or a copy of a board's or the master's —
built from aiocoap's own parts, in memory: the tests' way to send protected datagrams by hand."""

from __future__ import annotations

from aiocoap import oscore

SALT = b"pifleet-oscore-1"  # docs/security.md: the master salt every pifleet context uses


class Peer(oscore.CanProtect, oscore.CanUnprotect, oscore.SecurityContextUtils):
    def __init__(self, secret: bytes, sender_id: bytes, recipient_id: bytes = b"", seq: int = 0) -> None:
        self.alg_aead = oscore.algorithms["AES-CCM-16-64-128"]
        self.hashfun = oscore.hashfunctions["sha256"]
        self.sender_id, self.recipient_id, self.id_context = sender_id, recipient_id, None
        self.sender_sequence_number = seq
        self.recipient_replay_window = oscore.ReplayWindow(32, lambda: None)
        self.recipient_replay_window.initialize_empty()
        self.echo_recovery = None
        self.derive_keys(SALT, secret)

    def post_seqnoincrease(self) -> None:
        """Nothing to keep."""
