"""Fuzzing the REST API from its own OpenAPI 3.1 schema (/schema/openapi.json) with schemathesis: every operation,
valid and invalid inputs, with the test API token (the real handlers) and without one (only 401s).

With the token it is `schemathesis run` itself, with all of its checks (`--checks all`: no 5xx, status codes,
content types, headers and bodies as documented, schema-valid inputs accepted, invalid ones refused, 405 with
`Allow`, auth not ignored, created resources readable …), its coverage, fuzzing and stateful phases, and the
project's settings (tests/fuzz/schemathesis.toml, docs/api.md): the contract of issue 13's item 9. It must find
nothing; the master's log must have no ERROR. Reproducible: a fixed seed.

What must not run for real here: the master sees only virtual boards, and the fuzz master has none at all,
so nothing names a board that could move. On top of that, the port of a probe or a flash is always one that
cannot exist (tests/fuzz/hooks.py: nothing touches a serial device), a firmware download goes to a proxy that
refuses at once (no internet use), the test token is never revoked and the first admin never deleted, and the
event stream (an endless response) is left out. The number of cases is printed at the end of the run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.support.masters import REPO, MasterProcess

from .counts import record

pytestmark = pytest.mark.timeout(600)

EXAMPLES = 5  # per operation in the fuzzing phase of `schemathesis run`, with the token (coverage: all its cases)
ANONYMOUS_EXAMPLES = 5  # per operation, without a token
PUBLIC = {"health", "login", "setup"}  # the operations anyone may use (app.py)
LEFT_OUT = {"streamEvents"}  # server-sent events: the response never ends
CONFIG = REPO / "tests" / "fuzz" / "schemathesis.toml"
SETTINGS = dict(
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
_CASES = re.compile(r"(\d+) generated")


def schemathesis_command(url: str, token: str, examples: int = EXAMPLES) -> list[str]:
    """`schemathesis run` against a master, all checks, with the project's settings (docs/api.md)."""
    return [
        sys.executable,
        "-c",
        "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())",
        "--no-color",
        "--config-file",
        str(CONFIG),
        "run",
        f"{url}/schema/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "all",
        *(arg for op in sorted(LEFT_OUT) for arg in ("--exclude-operation-id", op)),
        "--seed",
        "1",
        "--max-examples",
        str(examples),
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--workers",
        "1",
    ]


@pytest.fixture(scope="module")
def api_master(tmp_path_factory, pg_url):
    """A master of its own (a fresh database, no boards); downloads go to a closed port on loopback."""
    from pifleet.storage.postgres import with_database

    closed = "http://127.0.0.1:9"
    m = MasterProcess(
        tmp_path_factory.mktemp("api-fuzz"),
        with_database(pg_url, f"t_{uuid.uuid4().hex[:12]}"),
        environ={
            "https_proxy": closed,
            "http_proxy": closed,
            "HTTPS_PROXY": closed,
            "HTTP_PROXY": closed,
            "no_proxy": "",
            "NO_PROXY": "",
        },
    )
    m.start()
    yield m
    m.stop()
    m.assert_no_errors()


@pytest.fixture(scope="module")
def schema(api_master):
    raw = httpx.get(api_master.url + "/schema/openapi.json", headers=api_master.headers, timeout=30)
    assert raw.status_code == 200, raw.text
    loaded = schemathesis.openapi.from_dict(raw.json())
    loaded.config.update(base_url=api_master.url)
    return loaded


def _operations(schema):
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.definition.raw.get("operationId") not in LEFT_OUT:
            yield operation


def _run(operation, mode: GenerationMode, examples: int, call, failures: list[str]) -> None:
    @settings(max_examples=examples, **SETTINGS)
    @given(case=operation.as_strategy(generation_mode=mode))
    def one(case):
        call(case)

    try:
        one()
    except Unsatisfiable:  # nothing to make invalid (no parameters, or only free-form strings)
        pass
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - every operation's failures are collected and reported together
        failures.append(f"{operation.label} ({mode.value}): {type(exc).__name__}: {str(exc)[:2000]}")


def test_schemathesis_run_with_all_checks_finds_nothing(api_master):
    """The real handlers, the whole contract: `schemathesis run --checks all` exits 0."""
    assert api_master.token, "the suite's masters have an API token (tests/support/masters.py)"
    env = dict(os.environ, SCHEMATHESIS_HOOKS="tests.fuzz.hooks", PYTHONPATH=str(REPO))
    run = subprocess.run(
        schemathesis_command(api_master.url, api_master.token),
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=560,
    )
    cases = _CASES.search(run.stdout)
    if cases:
        record("api: schemathesis run --checks all, with a token", int(cases.group(1)))
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    assert cases and int(cases.group(1)) > 0, run.stdout[-5000:]
    assert api_master.get("/api/me")["via"] == "token"  # the token still works after all that
    api_master.assert_no_errors()


def test_every_operation_without_a_token_is_refused(api_master, schema):
    """Anonymous: 401 for everything but login, setup and health, which never answer 5xx either."""
    failures: list[str] = []

    def call(case):
        record("api: schemathesis without a token")
        op = case.operation.definition.raw.get("operationId")
        response = case.call(timeout=30)
        if op in PUBLIC:
            assert response.status_code < 500, f"{response.status_code} {response.text[:300]}"
        else:
            assert response.status_code == 401, f"{response.status_code} {response.text[:300]}"

    for operation in _operations(schema):
        _run(operation, GenerationMode.POSITIVE, ANONYMOUS_EXAMPLES, call, failures)
    assert not failures, "\n\n".join(failures)
    api_master.assert_no_errors()
