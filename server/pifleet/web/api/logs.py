"""JSON API of the boards' logs: GET /api/devices/NAME/logs (following them live: GET /api/events?logs=NAME)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import Parameter

from ...devices.logs import DEFAULT_LIMIT, KEEP, BoardLogs, LogLine
from ...errors import InvalidError
from ..contract import empty_allowed, problems

# Taken as text and checked by the service, so a bad value is a 422 naming its field, as the schema says it is.
Since = Annotated[
    str | None,
    Parameter(
        description="Only lines the master received at or after this instant (ISO 8601; without an offset: the "
        "master's local time)",
        schema_extra={"oneOf": None, "type": "string", "format": "date-time"},
    ),
]
Limit = Annotated[
    str | None,
    Parameter(
        description=f"At most this many lines, the newest (default {DEFAULT_LIMIT})",
        schema_extra={"oneOf": None, "type": "integer", "minimum": 1, "maximum": KEEP},
    ),
]


class LogController(Controller):
    path = "/api/devices"
    tags = ["devices"]

    @get(
        "/{name:str}/logs",
        operation_id="listDeviceLogs",
        opt=problems(InvalidError) | empty_allowed("since", "limit"),  # 422: since or limit; empty: absent
        summary=f"What the board printed: its newest lines (the master keeps {KEEP:,} per board), newest last",
    )
    async def list_logs(
        self, board_logs: BoardLogs, name: str, since: Since = None, limit: Limit = None
    ) -> list[LogLine]:
        return await board_logs.lines(name, since, limit)
