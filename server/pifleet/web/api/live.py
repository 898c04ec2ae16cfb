"""Server-sent events for the dashboard, and the master's counters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from litestar import Controller, get
from litestar.response import ServerSentEvent, ServerSentEventMessage

from ...master import Master

KEEPALIVE_S = 15


class LiveController(Controller):
    path = "/api"
    tags = ["live"]

    @get("/events", operation_id="streamEvents", summary="Server-sent events: devices | jobs | executions changed")
    async def events(self, master: Master) -> ServerSentEvent:
        async def stream() -> AsyncIterator[ServerSentEventMessage]:
            subscription = master.hub.subscribe()
            yield ServerSentEventMessage(event="hello", data="{}")
            while True:
                try:
                    topic = await asyncio.wait_for(anext(subscription), KEEPALIVE_S)
                except TimeoutError:
                    yield ServerSentEventMessage(comment="keep-alive")
                    continue
                yield ServerSentEventMessage(event=topic, data="{}")

        return ServerSentEvent(stream())

    @get("/metrics", operation_id="getMetrics", summary="Counters of the CoAP endpoint")
    async def metrics(self, master: Master) -> dict[str, int]:
        return dict(master.gateway.counters)
