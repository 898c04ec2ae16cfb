"""Errors as RFC 9457 problem documents (application/problem+json), each naming the offending field."""

from __future__ import annotations

import logging
import re

import asyncpg
import msgspec
from asyncpg.exceptions import _base as asyncpg_base
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from ..errors import PifleetError

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"

_PATH = re.compile(r"at `\$\.?([^`]*)`")
_MISSING = re.compile(r"missing required field `([^`]+)`")


class Problem(msgspec.Struct):
    """An error answer (RFC 9457): what went wrong (`title`, `detail`) and, where it lies in the request, `field`
    (dotted: `trigger.expr`, `devices[2]`)."""

    type: str
    title: str
    status: int
    detail: str
    field: str | msgspec.UnsetType = msgspec.UNSET
    line: int | msgspec.UnsetType = msgspec.UNSET  # a module's compile error: the line it names


def problem(status: int, title: str, detail: str, field: str | None = None, **extra) -> Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if field is not None:
        body["field"] = field
    body.update(extra)  # RFC 9457 extension members, e.g. the source `line` of a compile error
    return Response(body, status_code=status, media_type=MEDIA_TYPE)


def domain_error(request: Request, exc: PifleetError) -> Response:
    return problem(exc.status, exc.title, exc.detail, exc.field, **getattr(exc, "extra", {}))


def validation_error(request: Request, exc: ValidationException) -> Response:
    """Litestar's decoding errors (msgspec) say `... - at `$.trigger.expr``: lift that path into `field`."""
    messages = []
    field = None
    for item in exc.extra if isinstance(exc.extra, list) else []:
        message = item.get("message", "") if isinstance(item, dict) else str(item)
        key = str(item.get("key") or "") if isinstance(item, dict) else ""
        messages.append(message)
        if field is None:
            if key == "data":  # Litestar names the request body after the handler's `data` argument
                key = ""
            if m := _PATH.search(message):
                key = m.group(1)
            if missing := _MISSING.search(message):  # name the missing field itself, not its parent
                key = f"{key}.{missing.group(1)}" if key else missing.group(1)
            field = key or None
    detail = "; ".join(messages) or exc.detail
    return problem(400, "Invalid request", detail, field)


def http_error(request: Request, exc: HTTPException) -> Response:
    """Litestar's own refusals (404, 405, 413 …), with their headers: a 405 says what the path allows (`Allow`,
    RFC 9110) — the static files, which raise it without one, allow GET and HEAD."""
    response = problem(exc.status_code, exc.detail if exc.status_code < 500 else "Server error", exc.detail)
    response.headers.update(exc.headers or {})
    if exc.status_code == 405 and "allow" not in {k.lower() for k in response.headers}:
        response.headers["Allow"] = "GET, HEAD"
    return response


def unstorable_value(request: Request, exc: Exception) -> Response:
    """A value that passed decoding but that PostgreSQL cannot take (a NUL in text, deep in a job's free-form
    parameters; an integer beyond its column): the client's input, so 422 — well-formed, as the schema says, but
    refused by a rule beyond it (web/contract.py documents 422 wherever input is taken) — not a crash. Inputs should
    be checked where they are decoded; this is the net under what a check missed (found by tests/fuzz), logged so
    it gets a check of its own."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    log.warning("%s %s: a value the database cannot store: %s", request.method, request.url.path, reason)
    return problem(422, "Invalid input", f"a value the database cannot store: {reason}")


def unexpected(request: Request, exc: Exception) -> Response:
    """A bug: logged with its traceback (the tests fail on ERROR lines), answered as a 500 problem without
    details (they may say more than a client should read)."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return problem(500, "Server error", "the master failed to handle this request; its log says why")


HANDLERS = {
    PifleetError: domain_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    asyncpg.DataError: unstorable_value,
    asyncpg_base.DataError: unstorable_value,
    Exception: unexpected,
}
