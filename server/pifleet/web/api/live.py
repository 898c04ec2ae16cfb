"""Server-sent events for the dashboard (the master's counters are web/api/metrics.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from litestar import Controller, Request, get
from litestar.response import ServerSentEvent, ServerSentEventMessage

from ...auth.errors import UnauthenticatedError
from ...auth.service import AuthService
from ...devices.service import DeviceService
from ...errors import NotFoundError
from ...events import EventHub
from ..contract import NameFilter, problems
from .auth import authenticate, peer

KEEPALIVE_S = 15
RECHECK_S = 5  # how often an open stream asks again whether its session or token is still valid

log = logging.getLogger(__name__)


class LiveController(Controller):
    path = "/api"
    tags = ["live"]

    @get(
        "/events",
        operation_id="streamEvents",
        opt=problems(NotFoundError),  # ?logs=NAME of no board
        summary="Server-sent events: devices | jobs | executions … changed; a board's log lines",
    )
    async def events(
        self,
        request: Request,
        hub: EventHub,
        auth: AuthService,
        device_service: DeviceService,
        logs: NameFilter = None,  # a board's name: also stream its log lines (see below)
    ) -> ServerSentEvent:
        """One event per topic that changed. The stream outlives the request that opened it, so it checks the
        credential again every few seconds: a logout, an expired session or a revoked token ends it with a
        last `session-ended` event (the dashboard then goes to the login page).

        With `?logs=NAME`, each batch of lines that board sends comes as a `logs` event whose data is
        {"device", "lines": [{"seq", "time", "line"}]} (lines numbered without gaps: a follower that sees a gap
        reads the lines it missed from GET /api/devices/NAME/logs)."""
        follow = [(await device_service.get(logs)).id] if logs is not None else []

        async def stream() -> AsyncIterator[ServerSentEventMessage]:
            with hub.subscribe(follow) as subscription:
                yield ServerSentEventMessage(event="hello", data="{}")
                loop = asyncio.get_running_loop()
                checked = quiet_since = loop.time()
                while True:
                    notice = await subscription.next(RECHECK_S)
                    if loop.time() - checked >= RECHECK_S:
                        checked = loop.time()
                        try:
                            await authenticate(request, auth)
                        except UnauthenticatedError as e:
                            log.info("event stream of %s ended: %s", peer(request), e.detail)
                            yield ServerSentEventMessage(event="session-ended", data="{}")
                            return
                    if notice is not None:
                        quiet_since = loop.time()
                        yield ServerSentEventMessage(event=notice[0], data=notice[1])
                    elif loop.time() - quiet_since >= KEEPALIVE_S:
                        quiet_since = loop.time()
                        yield ServerSentEventMessage(comment="keep-alive")

        return ServerSentEvent(stream())
