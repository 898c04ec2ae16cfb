"""A request the master stopped waiting for stops being sent: two places where aiocoap (0.4.17) keeps a timed-out
Confirmable request alive, found over a lossy link (tests/system/chaos/test_lossy_link.py).

Layer: gateway (aiocoap adapter). Nothing here decides anything about boards.

aiocoap sends one Confirmable request at a time to a peer (RFC 7252 §4.7, NSTART = 1): the next waits in a
backlog until the one in flight is acknowledged, or until its retransmissions end (ACK_TIMEOUT 2-3 s, doubling,
MAX_RETRANSMIT 4: 62-93 s later). But a request whose caller stopped waiting (a command's timeout, 21 s) was not
taken off the wire (chrysn/aiocoap#363): its message manager returns no canceller to the token manager, and
under OSCORE the protected request's task keeps waiting for its answer whoever asked. So over a 30 % loss link a
command that timed out held every later request to that board — the job's retry, the plan push, the capability
read, the separate answers to the board's registration updates — for up to a minute and a half, and then failed
them all at once with ConRetransmitsExceeded (aiocoap takes one exchange's end for the peer's). A retry that
never left the master timed out too, and the run used up its attempts. Now:

- an exchange of ours is taken off the wire when its request's caller is gone (its pipe ends): no more
  retransmissions, and the backlog to that peer goes on (a request still in the backlog is dropped from it);
- under OSCORE the end of the caller's interest reaches the protected request's task, which then cancels the
  inner (wire) request: the first point;
- a request whose caller stopped waiting in the very loop turn its answer (or error) came in ends quietly:
  aiocoap stops such a request one turn after the caller gave up, and an answer in between was set on the
  cancelled response future, whose InvalidStateError aiocoap logged as an error from wherever the answer came
  (its datagram callback, its error dispatch, its block-wise runner: `_request_run`, `_blockwise_run`).

The same one-at-a-time rule held the master's answers to the board: aiocoap answers a request that takes longer
than 0.1 s (EMPTY_ACK_DELAY: a registration update's database commit on a busy Pi) with an empty ACK and then a
separate Confirmable response, which waits in that backlog too. A board's registration update then went without
its answer for as long as a command to that board was in flight (the board sends no next update until it has it),
and the master took the board for gone when its lifetime ran out. The master now waits up to 1 s before the empty
ACK (`answer_in_the_ack`), as the board does (agent/endpoint.py, _PIGGYBACK_MS): below any client's ACK_TIMEOUT
(2 s, RFC 7252 §4.8), so an answer ready within a second goes back in the ACK, which needs no backlog, and a lost
one is sent again from aiocoap's deduplication cache when the request is retransmitted.

A request the board took but whose answer was lost is not lost with it: the retry carries the same execution id,
and the board answers it from what it remembers (docs/agent.md).
"""

from __future__ import annotations

import asyncio
import logging

from aiocoap.messagemanager import MessageManager
from aiocoap.numbers.constants import TransportTuning
from aiocoap.numbers.types import CON
from aiocoap.protocol import BlockwiseRequest, Request
from aiocoap.transports.oscore import TransportOSCORE

log = logging.getLogger(__name__)

EMPTY_ACK_DELAY_S = 1.0  # how long an answer may take and still go back in the ACK (aiocoap's default: 0.1 s)

_original_send_message = MessageManager.send_message


def _send_message(self: MessageManager, message, messageerror_monitor=None):
    """MessageManager.send_message, returning a canceller for our own Confirmable requests (the token manager
    calls it when the request's pipe ends, and when the response came by another way)."""
    result = _original_send_message(self, message, messageerror_monitor)
    if message.mtype is not CON or not message.code.is_request():
        return result
    if (message.remote, message.mid) not in (self._active_exchanges or ()) and not any(
        entry[0] is message for entry in self._backlogs.get(message.remote, ())
    ):
        # the exchange ended while it was sent (the socket refused the datagram: its error was dispatched at once
        # and ended the request's pipe): nothing to take off the wire, and the token manager must not be given a
        # canceller to hook to the ended pipe (that failed inside aiocoap: "Task exception was never retrieved")
        return result

    def cancel() -> None:
        _abandon(self, message)

    return cancel


def _abandon(manager: MessageManager, message) -> None:
    """Take `message` off the wire: stop its retransmissions (or drop it from the backlog) and let the next
    request to the same peer go."""
    if manager._active_exchanges is None:  # shutting down
        return
    key = (message.remote, message.mid)
    exchange = manager._active_exchanges.pop(key, None)
    if exchange is not None:
        _monitor, next_retransmission = exchange
        next_retransmission.cancel()
        log.debug("exchange %d to %s abandoned: its caller stopped waiting", message.mid, message.remote)
        if message.remote in manager._backlogs:
            manager._continue_backlog(message.remote)
        return
    backlog = manager._backlogs.get(message.remote)
    if backlog:
        backlog[:] = [entry for entry in backlog if entry[0] is not message]


def _oscore_request(self: TransportOSCORE, request) -> None:
    """TransportOSCORE.request whose task ends when nobody waits for its answer any more (its inner request is
    cancelled with it, so the exchange goes off the wire); a cancelled task is not an error."""
    loop = self.loop
    # (named without the request's repr: aiocoap's is made of its message's and remote's, 4 % of the master's CPU
    # in a rollout of 50)
    task = loop.create_task(self._request(request), name="OSCORE request")
    self._tasks.add(task)

    def done(task, _tasks=self._tasks, _request=request) -> None:
        _tasks.discard(task)
        if task.cancelled():
            return  # its caller stopped waiting: nobody to tell
        exc = task.exception()
        if exc is not None and _request._event_callbacks is not False:  # (aiocoap's own mark of an ended pipe)
            _request.add_exception(exc)
        elif exc is not None:
            # the caller stopped waiting while the answer came in (the task then failed to give it, InvalidStateError):
            # nobody to tell; given to the ended pipe, it failed inside aiocoap's logging
            log.debug("protected request failed after its caller stopped waiting: %r", exc)

    def interest_ended() -> None:
        # also called at the last answer, from inside the task (which returns right after): looked at later
        loop.call_soon(lambda: task.done() or task.cancel())

    task.add_done_callback(done)
    request.on_interest_end(interest_ended)


_original_request_run = Request.__dict__["_run"]
_original_blockwise_run = BlockwiseRequest.__dict__["_run"].__func__


def _request_run(self: Request):
    """Request's runner (a generator the pipe's events are sent to), ending quietly when it finds its response
    cancelled: its caller stopped waiting in this loop turn, and aiocoap stops the request in the next."""
    try:
        return (yield from _original_request_run(self))
    except asyncio.InvalidStateError:
        if not self.response.cancelled():
            raise
        log.debug("an answer came in the loop turn its caller stopped waiting: dropped")


async def _blockwise_run(cls, app_request, response, *args) -> None:
    """BlockwiseRequest's runner, ending quietly when what it has for its caller finds nobody waiting."""
    try:
        await _original_blockwise_run(cls, app_request, response, *args)
    except Exception as exc:
        if not response.cancelled() or app_request.opt.observe is not None:
            raise
        log.debug("block-wise request ended after its caller stopped waiting: %r", exc)


def abandon_unwanted_requests() -> None:
    """Install them (process-wide; idempotent)."""
    MessageManager.send_message = _send_message
    TransportOSCORE.request = _oscore_request
    Request._run = _request_run
    BlockwiseRequest._run = classmethod(_blockwise_run)


def answer_in_the_ack() -> None:
    """Answers ready within EMPTY_ACK_DELAY_S are piggy-backed on the ACK (process-wide; idempotent)."""
    TransportTuning.EMPTY_ACK_DELAY = EMPTY_ACK_DELAY_S
