"""The master's metrics: GET /metrics in the Prometheus text format, GET /api/metrics the CoAP endpoint's counters
as JSON (the same counters as pifleet_coap_events_total). Neither is public: app.py's guard asks for a session or
an API token, and a token of scope `read` is enough (docs/operations.md, "Metrics").

Layer: web adapter over pifleet.metrics; what is counted, and where, is written there.
"""

from __future__ import annotations

from litestar import Controller, Response, get

from ...metrics import TEXT_FORMAT, Metrics


class MetricsController(Controller):
    tags = ["metrics"]

    @get(
        "/metrics",
        operation_id="getPrometheusMetrics",
        summary="Metrics in the Prometheus text format (boards, commands, executions, CoAP, database pool)",
        media_type=TEXT_FORMAT,
    )
    async def prometheus(self, metrics: Metrics) -> Response[bytes]:
        return Response(await metrics.exposition(), media_type=TEXT_FORMAT)  # litestar adds charset=utf-8

    @get("/api/metrics", operation_id="getMetrics", summary="Counters of the CoAP endpoint")
    async def counters(self, metrics: Metrics) -> dict[str, int]:
        return metrics.coap_counts()
