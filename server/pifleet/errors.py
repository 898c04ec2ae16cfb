"""Domain errors, one small tree. Services raise these; adapters map each once to HTTP (web.problems) and CoAP."""

from __future__ import annotations


class PifleetError(Exception):
    """Base of every error a user may see. `field` names the offending input, dotted (`action.params.seconds`)."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class InvalidError(PifleetError):
    status = 422
    title = "Invalid input"


class NotFoundError(PifleetError):
    status = 404
    title = "Not found"


class ConflictError(PifleetError):
    status = 409
    title = "Conflict"


class BoardError(PifleetError):
    """A board could not be reached or refused a command."""

    status = 502
    title = "Board error"


class BoardUnreachableError(BoardError):
    """No answer from a board (timeout, ICMP unreachable), or another board answers at its address."""


class BoardTimeoutError(BoardUnreachableError):
    """The board did not answer within the command's timeout."""
