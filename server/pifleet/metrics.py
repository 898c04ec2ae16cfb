"""The master's metrics in Prometheus form: what the parts count as it happens, and what is read at scrape time.

Layer: below the services, beside the model (prometheus_client is a plain library: no web framework, no CoAP).
master.py builds one Metrics per Master, with its own CollectorRegistry (never prometheus_client's process-wide
default, so two masters or a unit test's parts in one process never add to each other's series), and hands it to
the parts that count where the event happens:

- jobs/runner.py: `command_duration` (every command a run sends to a board, answered or not), `executions` (a run on
  a device that ended: succeeded, failed, timed_out, missed, skipped; a role or group run counts once per
  device), `fire_error` (when a run started minus when it was due);
- gateway/coap.py: `datagrams` (a request the CoAP endpoint served, or refused: 4.xx/5.xx, or no answer at all
  from the OSCORE layer) and `coap_events`, the gateway's own counters by event (registrations, updates,
  telemetry, pair_requests, malformed_dropped, *_refused), which GET /api/metrics shows as JSON;
- modules/sync.py: `module_pushes` (a module file sent to a board), flashing/service.py: `flashes`;
- devices/logs.py: `board_log_lines` (a line of a board's log, stored).

What is a state rather than an event is read when Prometheus asks (`await exposition()`): the boards online and
offline and when each was last seen (the device service, from the database), and the database pool.
GET /metrics (web/api/metrics.py) serves it to a principal allowed to read (an API token of scope `read`).
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .model import DeviceRead

__all__ = ["TEXT_FORMAT", "Metrics", "pool_families"]

# the text format every Prometheus reads (2.x and 3.x), in UTF-8; newer prometheus_clients call their default
# "version=1.0.0", which older servers do not know, for the same text when names are plain as ours are
TEXT_FORMAT = "text/plain; version=0.0.4"

EXECUTION_STATES = ("succeeded", "failed", "timed_out", "missed", "skipped")
OUTCOMES = ("succeeded", "failed")
# a blind moves for seconds (the command answers when it stopped); a sensor read takes tens of ms
COMMAND_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# the event loop starts a due run within ms; Huey's poll and a busy queue make it seconds
FIRE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)

Boards = Callable[[], Awaitable[list[DeviceRead]]]


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        # the gateway's counters by event (a plain Counter: `counters["registrations"] += 1` where it happens)
        self.coap_events: collections.Counter[str] = collections.Counter()
        # requests the CoAP endpoint answered: "served" (2.xx) or "refused"; malformed ones are coap_events'
        self.datagrams: collections.Counter[str] = collections.Counter()
        self.command_duration = Histogram(
            "pifleet_command_duration_seconds",
            "Time from sending a command to a board to its answer (or to giving up), by capability and command",
            ["capability", "command"],
            buckets=COMMAND_BUCKETS,
            registry=registry,
        )
        self.executions = Counter(
            "pifleet_executions", "Runs on a device that ended, by their final state", ["state"], registry=registry
        )
        self.fire_error = Histogram(
            "pifleet_fire_error_seconds",
            "When a run started minus when it was due (how late the scheduler was)",
            buckets=FIRE_BUCKETS,
            registry=registry,
        )
        self.module_pushes = Counter(
            "pifleet_module_pushes",
            "Module files sent to a board (PUT /m/STEM), by outcome",
            ["outcome"],
            registry=registry,
        )
        self.flashes = Counter("pifleet_flashes", "Boards flashed over USB, by outcome", ["outcome"], registry=registry)
        # devices/logs.py: each line a board sent (POST /l) and the master stored
        self.board_log_lines = Counter("pifleet_board_log_lines", "Log lines received from boards", registry=registry)
        for state in EXECUTION_STATES:  # a series exists from the start, so a graph shows 0 rather than nothing
            self.executions.labels(state)
        for outcome in OUTCOMES:
            self.module_pushes.labels(outcome)
            self.flashes.labels(outcome)
        self._boards: Boards | None = None
        self._pool: Any = None

    def read_boards(self, boards: Boards) -> None:
        """Where the boards are read from at each scrape (the device service's list)."""
        self._boards = boards

    def read_pool(self, pool: Any) -> None:
        """The database pool whose size and waiters each scrape shows."""
        self._pool = pool

    def coap_counts(self) -> dict[str, int]:
        """The gateway's counters by event (GET /api/metrics)."""
        return dict(self.coap_events)

    async def exposition(self) -> bytes:
        """Everything, in the Prometheus text format (TEXT_FORMAT, UTF-8)."""
        boards = await self._boards() if self._boards is not None else []
        now = [*board_families(boards), *self._coap_families(), *pool_families(self._pool)]
        return generate_latest(_Scrape(self.registry, now))

    def _coap_families(self) -> Iterator[Metric]:
        datagrams = CounterMetricFamily(
            "pifleet_coap_datagrams",
            "Requests the CoAP endpoint received: served (2.xx), refused (4.xx, 5.xx, or dropped by the OSCORE "
            "layer), malformed (not CoAP: dropped)",
            labels=["outcome"],
        )
        datagrams.add_metric(["served"], self.datagrams["served"])
        datagrams.add_metric(["refused"], self.datagrams["refused"])
        datagrams.add_metric(["malformed"], self.coap_events["malformed_dropped"])
        yield datagrams
        events = CounterMetricFamily(
            "pifleet_coap_events", "The CoAP endpoint's counters by event (GET /api/metrics)", labels=["event"]
        )
        for event, count in sorted(self.coap_events.items()):
            events.add_metric([event], count)
        yield events


def board_families(boards: Iterable[DeviceRead]) -> Iterator[Metric]:
    boards = list(boards)
    states = GaugeMetricFamily("pifleet_boards", "Boards the master knows, online or offline", labels=["state"])
    online = sum(1 for b in boards if b.online)
    states.add_metric(["online"], online)
    states.add_metric(["offline"], len(boards) - online)
    yield states
    seen = GaugeMetricFamily(
        "pifleet_board_last_seen_seconds",
        "When the master last heard from each board (Unix time; time() - this is how long ago)",
        labels=["device"],
    )
    for board in boards:
        if board.last_seen is not None:
            seen.add_metric([board.name], board.last_seen.timestamp())
    yield seen


def pool_families(pool: Any) -> Iterator[Metric]:
    """An asyncpg pool's connections (open, idle, at most) and the requests waiting for one."""
    if pool is None:
        return
    yield GaugeMetricFamily("pifleet_db_pool_size", "Database connections open", value=pool.get_size())
    yield GaugeMetricFamily("pifleet_db_pool_idle", "Database connections open and idle", value=pool.get_idle_size())
    yield GaugeMetricFamily("pifleet_db_pool_max_size", "Database connections at most", value=pool.get_max_size())
    yield GaugeMetricFamily(
        "pifleet_db_pool_waiters", "Requests waiting for a database connection", value=_waiters(pool)
    )


def _waiters(pool: Any) -> int:
    # asyncpg (0.29 - 0.32) has no public count: acquire() waits in get() of the pool's asyncio queue of
    # connection holders, whose waiting futures are its _getters (tests/unit/test_metrics.py checks it still is)
    getters = getattr(getattr(pool, "_queue", None), "_getters", None) or ()
    return sum(1 for waiter in getters if not waiter.done())


class _Scrape:
    """One scrape's collector: the registry's series, then the ones read just now."""

    def __init__(self, registry: CollectorRegistry, now: list[Metric]) -> None:
        self.registry = registry
        self.now = now

    def collect(self) -> Iterator[Metric]:
        yield from self.registry.collect()
        yield from self.now
