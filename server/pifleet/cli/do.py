"""`pifleet do DEVICE CAPABILITY.COMMAND [key=value …]`: run a command on a board now and print its result.

Layer: CLI adapter, a client of the REST API (POST /api/devices|roles|groups/NAME/commands, then GET
/api/executions/ID while a long command runs); it imports only cli.client and the model's final states.
Exit status 0 when the command succeeded, 1 when it was refused, failed or timed out.
"""

from __future__ import annotations

import json
import time

import click

from ..model import FINAL_STATES
from .client import api_options, call, check, echo_json, request, table

POLL_S = 0.2  # while a long command runs (the API answered 202), how often its execution is looked at


def param(text: str) -> tuple[str, object]:
    """key=value; the value as JSON where it parses (50, 2.5, true, null, [1,2], "x"), else the text itself."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{text!r}: parameters are key=value (e.g. position=50)")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _split(action: str) -> tuple[str, str]:
    capability, sep, command = action.partition(".")
    if not sep or not capability or not command:
        raise click.BadParameter(f"{action!r}: give CAPABILITY.COMMAND, e.g. blind.goto", param_hint="ACTION")
    return capability, command


def _follow(url: str, execution: dict) -> dict:
    """Look at the execution until it has ended."""
    while execution["state"] not in FINAL_STATES:
        time.sleep(POLL_S)
        execution = call(url, "GET", f"/api/executions/{execution['id']}")
    return execution


def _answer(response, grouped: bool) -> dict:
    """The execution (a role's or group's: with its devices' runs) a command answer carries; a refusal before
    anything was sent (unknown name, capability, parameter …) ends here: exit 1 naming the field."""
    if response.status_code < 400:
        return response.json()
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    if not isinstance(problem, dict) or "execution" not in problem:
        check(response)  # raises
    # sent, recorded and failed: the problem document carries the record
    return (
        {"execution": problem["execution"], "devices": problem.get("devices", [])} if grouped else problem["execution"]
    )


def _line(execution: dict) -> str:
    if execution["state"] == "succeeded":
        return json.dumps(execution["result"])
    return execution["error"] or execution["state"]


@click.command("do")
@api_options
@click.option("--role", "kind", flag_value="role", help="TARGET is a role: every board with it.")
@click.option("--group", "kind", flag_value="group", help="TARGET is a group: every board in it.")
@click.option("--timeout", type=float, help="Seconds to wait for a board's answer (default: the master's, + seconds).")
@click.option("--json", "as_json", is_flag=True, help="Print the execution(s) as JSON.")
@click.argument("target")
@click.argument("action")
@click.argument("params", nargs=-1, type=param)
def do(url, kind, timeout, as_json, target, action, params) -> None:
    """Run CAPABILITY.COMMAND on the board TARGET now and print its result, e.g.
    `pifleet do blind-1 blind.goto position=50`. Parameters are key=value, values read as JSON where they
    parse. Exits 1 when the command is refused, fails or times out."""
    capability, command = _split(action)
    kind = kind or "device"
    body = {"capability": capability, "command": command, "params": dict(params)}
    if timeout is not None:
        body["timeout_s"] = timeout
    path = f"/api/{kind}s/{target}/commands"
    # wait as long as the board may take, so the answer is mostly final; a longer command is followed below
    response = request(url, "POST", path, json=body, params={"wait": 60}, timeout=90)
    answer = _answer(response, grouped=kind != "device")
    if kind == "device":
        execution = _follow(url, answer)
        runs = [execution]
    else:
        execution = _follow(url, answer["execution"])
        runs = [_follow(url, run) for run in answer["devices"]]
    if as_json:
        echo_json(execution if kind == "device" else {"execution": execution, "devices": runs})
    elif kind == "device":
        click.echo(_line(execution))
    else:
        table([[r["device"] or "-", r["state"], _line(r)] for r in runs], ["DEVICE", "STATE", "RESULT"])
    if execution["state"] != "succeeded":
        failed = runs[0] if kind == "device" else execution
        raise click.ClickException(f"{target} {action}: {failed['state']}: {failed['error'] or 'no reason given'}")


COMMANDS = [do]
