"""Commands sent at once — a person's button, a script's call, `pifleet do` — to a device, or to every device of a
role or group: checked like a job's action, recorded as executions (no job; `source` person or token, `actor`
who), sent by the runner's own path (jobs/runner.py `Runner.command`) and finished by the planner like any run.

Layer: service (no litestar, no aiocoap). A role's or group's command is one execution without a device, with one
run per device under it (step 0); the planner settles it once they have all finished, as it settles a role job's
run, and its boards act at one instant as a role job's do (jobs/runner.py, "due"). The caller waits for the outcome
up to `wait_s`; a command still running then goes on as a task of the event loop, and its execution says how it
ended (`GET /api/executions/ID`, the live event stream).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import Literal, NamedTuple

import asyncpg

from ..devices.params import check_command
from ..errors import ConflictError, InvalidError, NotFoundError, PifleetError
from ..events import EventHub
from ..model import CommandRequest, DeviceRead, ExecutionRead
from ..storage import devices as devices_q
from ..storage import jobs as q
from ..storage import roles as roles_q
from .runner import Runner

log = logging.getLogger(__name__)

TargetKind = Literal["device", "role", "group"]
Source = Literal["person", "token"]


class CommandOutcome(NamedTuple):
    """What became of a command within the wait: its execution (a role's or group's: the one its devices' runs
    hang under) and each device's run; `error`, the failure of a device command that ended; `done`, whether it
    has ended (else it is still running)."""

    execution: ExecutionRead
    devices: list[ExecutionRead]
    done: bool
    error: PifleetError | None


class CommandService:
    def __init__(self, pool: asyncpg.Pool, runner: Runner, hub: EventHub) -> None:
        self.pool = pool
        self.runner = runner
        self.hub = hub

    async def members(self, kind: TargetKind, name: str) -> list[DeviceRead]:
        """The devices a command to this device, role or group goes to now; 404 when the name is unknown."""
        if kind == "device":
            device = await devices_q.get_by_name(self.pool, name)
            if device is None:
                raise NotFoundError(f"no device named {name!r}", field="name")
            return [device]
        if kind == "role":
            if await roles_q.get_role(self.pool, name) is None:
                raise NotFoundError(f"no role named {name!r}", field="name")
            return [d for d in await devices_q.list_devices(self.pool) if d.role == name]
        members = await devices_q.group_members(self.pool, name)
        if members is None:
            raise NotFoundError(f"no group named {name!r}", field="name")
        return [d for d in await devices_q.list_devices(self.pool) if d.name in members]

    @staticmethod
    def check(devices: list[DeviceRead], request: CommandRequest) -> None:
        """Against each board's declared COMMANDS, as a job's action is: 422 naming `capability`, `command` or
        `params.X` of the request (and the device, when a role or group has boards that differ)."""
        for device in devices:
            try:
                check_command(device, request.capability, request.command, request.params, "request")
            except InvalidError as exc:
                field = (exc.field or "").removeprefix("request.") or None
                detail = exc.detail if len(devices) == 1 else f"{device.name}: {exc.detail}"
                raise InvalidError(detail, field=field) from None

    async def send(
        self,
        kind: TargetKind,
        name: str,
        request: CommandRequest,
        *,
        source: Source,
        actor: str,
        wait_s: float,
    ) -> CommandOutcome:
        """Check, record and send a command now; the outcome once it ended, or after `wait_s` as it is then."""
        devices = await self.members(kind, name)
        if not devices:
            raise ConflictError(f"{kind} {name!r} has no devices to command", field="name")
        self.check(devices, request)
        what = {
            "capability": request.capability,
            "command": request.command,
            "params": request.params,
            "source": source,
            "actor": actor,
        }
        async with self.pool.acquire() as conn, conn.transaction():
            parent = None
            if kind != "device":
                parent = await q.insert_command(conn, device_id=None, **what)
                await q.set_result(conn, parent["id"], {"devices": [d.name for d in devices]})
            rows = [
                await q.insert_command(conn, device_id=d.id, parent_id=parent["id"] if parent else None, **what)
                for d in devices
            ]
        self.hub.publish("executions")
        due = self.runner.instant() if parent is not None and len(rows) > 1 else None  # its boards act together
        tasks = [self.runner.start_command(row, request.timeout_s, due) for row in rows]
        if due is not None:
            log.info(
                "command %s to %s %s: %d boards act at %s",
                parent["id"],
                kind,
                name,
                len(rows),
                datetime.fromtimestamp(due / 1000, UTC).isoformat(timespec="milliseconds"),
                extra={"execution": str(parent["id"])},
            )
        await asyncio.wait(tasks, timeout=wait_s)
        done = all(t.done() for t in tasks)
        error = tasks[0].result() if parent is None and done else None
        runs = [await self._execution(row["id"]) for row in rows]
        if parent is None:
            return CommandOutcome(runs[0], [], done, error)
        return CommandOutcome(await self._execution(parent["id"]), runs, done, None)

    async def _execution(self, execution_id: uuid.UUID) -> ExecutionRead:
        execution = await q.get_execution(self.pool, execution_id)
        assert execution is not None, "an execution recorded a moment ago"
        return execution
