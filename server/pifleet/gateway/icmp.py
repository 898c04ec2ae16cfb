"""An ICMP error is the error of the board it came from, not of the next datagram the master sends.

Layer: gateway (aiocoap adapter, 0.4.17). Nothing here decides anything about boards.

aiocoap asks Linux for each ICMP error on its UDP socket (IP_RECVERR) and reads it from the socket's error queue
with the address of the datagram that caused it: a board that is off, or whose agent is restarting, answers
with port or host unreachable, and that board's request fails at once. But Linux also keeps the last such error
as the socket's pending error and returns it from the next `sendmsg`, whatever that datagram's address, without
sending the datagram. aiocoap took that for an error of the datagram being sent: when a board had just gone
away and the loop had not yet read its error, a request to another board (a rollout's next block, a command)
failed with "board unreachable" (tests/system/ota/test_rollout.py's offline board, CI on 2c0422b).

So a `sendmsg` that fails is tried once more, through aiocoap's own send: a failed `sendmsg` sent nothing, and the
failed call cleared the pending error. The datagram goes out, and the error queue still gives the first error to
the board it belongs to. A second failure is this datagram's own and is reported as aiocoap does.
"""

from __future__ import annotations

import logging

from aiocoap.util.asyncio.recvmsg import RecvmsgSelectorDatagramTransport

log = logging.getLogger(__name__)

_original_sendmsg = RecvmsgSelectorDatagramTransport.sendmsg


def _sendmsg(self: RecvmsgSelectorDatagramTransport, data, ancdata, flags, address) -> None:
    try:
        self.get_extra_info("socket").sendmsg((data,), ancdata, flags, address)
        return
    except Exception as exc:  # noqa: BLE001 — aiocoap's own send, below, reports what fails again
        log.debug("sending to %s failed (%s), perhaps for an earlier datagram: once more", address, exc)
    _original_sendmsg(self, data, ancdata, flags, address)


def pending_errors_stay_their_boards() -> None:
    """Install (process-wide; idempotent)."""
    RecvmsgSelectorDatagramTransport.sendmsg = _sendmsg
