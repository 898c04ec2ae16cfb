"""Fuzzing the REST API from its own OpenAPI 3.1 schema (/schema/openapi.json) with schemathesis: every operation,
valid and invalid inputs, with the test API token (the real handlers) and without one (only 401s).

What must hold: no 5xx, ever (`not_a_server_error`); answers of the authenticated run match the schema
(`response_schema_conformance`); the master's log has no ERROR. Reproducible: hypothesis is derandomized.

What must not run for real here: the master sees only virtual boards, and the fuzz master has none at all,
so nothing names a board that could move. On top of that, the port of a probe or a flash is always one that
cannot exist (nothing touches a serial device), a firmware download goes to a proxy that refuses at once
(no internet use), the test token is never revoked and the first admin never deleted, and the event stream
(an endless response) is left out. The number of cases is printed at the end of the run."""

from __future__ import annotations

import uuid

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.support.masters import ADMIN, MasterProcess

from .counts import record

pytestmark = pytest.mark.timeout(400)

EXAMPLES = 25  # per operation and generation mode, with the token (2 modes)
ANONYMOUS_EXAMPLES = 5  # per operation, without a token
PUBLIC = {"health", "login", "setup"}  # the operations anyone may use (app.py)
LEFT_OUT = {"streamEvents"}  # server-sent events: the response never ends
# answers that do not match the schema, left to their owners (docs/security.md, "Fuzzing"): logout's 204 has
# no body, but its schema promises JSON
NOT_CONFORMING = {"logout"}
NO_PORT = "/dev/pifleet-fuzz-no-such-port"
SETTINGS = dict(
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


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


def _tame(case) -> None:
    """What must not happen for real, replaced by what is refused just the same (see the module docstring)."""
    op = case.operation.definition.raw.get("operationId")
    if op in ("probeUsbBoard", "startFlash") and isinstance(case.body, dict) and "port" in case.body:
        case.body["port"] = NO_PORT
    if op == "deleteUser" and case.path_parameters and case.path_parameters.get("name") == ADMIN:
        case.path_parameters["name"] = ADMIN + "-not"


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


def test_every_operation_with_a_token(api_master, schema):
    """The real handlers: never a 5xx, and what they answer is what the schema says."""
    failures: list[str] = []
    headers = api_master.headers
    assert headers, "the suite's masters have an API token (tests/support/masters.py)"

    def call(case):
        _tame(case)
        record("api: schemathesis with a token")
        conforming = case.operation.definition.raw.get("operationId") not in NOT_CONFORMING
        case.call_and_validate(
            headers=headers,
            timeout=30,
            checks=[not_a_server_error] + ([response_schema_conformance] if conforming else []),
        )

    for operation in _operations(schema):
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _run(operation, mode, EXAMPLES, call, failures)
    assert not failures, "\n\n".join(failures)
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
