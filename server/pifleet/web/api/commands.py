"""JSON API of commands sent at once: `POST /api/devices|roles|groups/NAME/commands`.

Layer: web adapter over jobs.commands.CommandService. Who sends it is the request's principal (a person by session:
source `person`; a script by API token: source `token`); read-only principals never get here (the guard in app.py
answers 403). The answers:
- 200: the command ended well within `wait` seconds — the execution with the board's `result` (for a role or
  group: `{"execution", "devices"}`, every device's run);
- 202: still running after `wait` seconds (a long move) — the same body as it is now, `Location` the execution's
  URL; it finishes on its own and its end arrives on the event stream;
- 404/409/422 problem: refused before anything was sent (unknown name, no devices, a capability, command or
  parameter the board does not declare — `field` names it: `capability`, `command`, `params.position`);
- 502/504 problem: it was sent (and recorded) but failed or timed out; `execution` carries the record.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, post
from litestar.params import Parameter

from ...auth.model import Principal
from ...errors import BoardTimeoutError
from ...jobs.commands import CommandOutcome, CommandService, TargetKind
from ...model import CommandRead, CommandRequest, ExecutionRead
from ..problems import problem

WAIT_S = 5.0  # how long a request waits for a command's end before it answers 202 (a blind's move can take 60 s)
Wait = Annotated[
    float,
    Parameter(ge=0, le=120, description="Seconds to wait for the command to end before answering 202 (default 5)"),
]


def _answer(outcome: CommandOutcome, grouped: bool) -> Response[Any]:
    execution = outcome.execution
    body: ExecutionRead | CommandRead = CommandRead(execution, outcome.devices) if grouped else execution
    location = {"Location": f"/api/executions/{execution.id}"}
    if not outcome.done:
        return Response(body, status_code=202, headers=location)
    if execution.state == "succeeded":
        return Response(body, status_code=200, headers=location)
    # sent, recorded, and failed: a problem document that still carries the record
    timed_out = isinstance(outcome.error, BoardTimeoutError) or execution.state == "timed_out"
    status = 504 if timed_out else 502
    detail = execution.error or "the command failed"
    field = outcome.error.field if outcome.error is not None else None
    response = problem(
        status,
        "Board timeout" if timed_out else "Command failed",
        detail,
        field,
        execution=msgspec.to_builtins(execution),
        **({"devices": msgspec.to_builtins(outcome.devices)} if grouped else {}),
    )
    response.headers.update(location)
    return response


async def _send(
    commands: CommandService, kind: TargetKind, name: str, data: CommandRequest, principal: Principal, wait: float
) -> Response[Any]:
    source = "person" if principal.via == "session" else "token"
    outcome = await commands.send(kind, name, data, source=source, actor=principal.name, wait_s=wait)
    return _answer(outcome, grouped=kind != "device")


_RESPONSES = "200: it ended well (the execution and its result); 202: still running (Location: the execution)"


class DeviceCommandController(Controller):
    path = "/api/devices"
    tags = ["commands"]

    @post(
        "/{name:str}/commands",
        operation_id="commandDevice",
        status_code=200,
        summary="Run a command on a board now, checked like a job's action; recorded as an execution",
        description=_RESPONSES,
    )
    async def command_device(
        self,
        command_service: CommandService,
        principal: Principal,
        name: str,
        data: CommandRequest,
        wait: Wait = WAIT_S,
    ) -> Response[ExecutionRead]:
        return await _send(command_service, "device", name, data, principal, wait)


class RoleCommandController(Controller):
    path = "/api/roles"
    tags = ["commands"]

    @post(
        "/{name:str}/commands",
        operation_id="commandRole",
        status_code=200,
        summary="Run a command now on every board with this role (one execution, a run per board under it)",
        description=_RESPONSES,
    )
    async def command_role(
        self,
        command_service: CommandService,
        principal: Principal,
        name: str,
        data: CommandRequest,
        wait: Wait = WAIT_S,
    ) -> Response[CommandRead]:
        return await _send(command_service, "role", name, data, principal, wait)


class GroupCommandController(Controller):
    path = "/api/groups"
    tags = ["commands"]

    @post(
        "/{name:str}/commands",
        operation_id="commandGroup",
        status_code=200,
        summary="Run a command now on every board of this group (one execution, a run per board under it)",
        description=_RESPONSES,
    )
    async def command_group(
        self,
        command_service: CommandService,
        principal: Principal,
        name: str,
        data: CommandRequest,
        wait: Wait = WAIT_S,
    ) -> Response[CommandRead]:
        return await _send(command_service, "group", name, data, principal, wait)


CONTROLLERS = [DeviceCommandController, RoleCommandController, GroupCommandController]
