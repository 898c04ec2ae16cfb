"""The REST API's contract: OpenAPI schema, problem responses naming the field for malformed job JSON."""

from __future__ import annotations

import pytest

GOOD = {
    "name": "evening",
    "target": {"device": "blind-1"},
    "action": {"capability": "blind", "command": "move", "params": {"direction": "down", "seconds": 5}},
    "trigger": {"type": "cron", "expr": "0 20 * * *", "tz": "Europe/Berlin"},
}


def test_openapi_schema_lists_every_route_with_an_operation_id(module_master):
    schema = module_master.get("/schema/openapi.json")
    ops = [op for path in schema["paths"].values() for op in path.values()]
    assert {"listDevices", "createJob", "listExecutions", "listUpcoming"} <= {op["operationId"] for op in ops}
    assert "JobSpec" in schema["components"]["schemas"]


def broken(path: str, value):
    """GOOD with the value at a dotted path replaced (None: removed)."""
    import copy

    doc = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        node = node[p]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return doc


@pytest.mark.parametrize(
    "path, value, field",
    [
        ("name", "", "name"),
        ("name", "has spaces", "name"),
        ("trigger.type", "yearly", "trigger.type"),
        ("trigger.expr", 5, "trigger.expr"),
        ("trigger.expr", "0 25 * * *", "trigger.expr"),
        ("trigger.tz", "Mars/Olympus", "trigger.tz"),
        ("action.capability", None, "action.capability"),
        ("target", None, "target"),
        ("retry", {"attempts": 0}, "retry.attempts"),
        ("target.device", "nobody", "target.device"),
    ],
)
def test_invalid_job_json_gets_a_problem_naming_the_field(module_master, path, value, field):
    r = module_master.post("/api/jobs", broken(path, value))
    assert 400 <= r.status_code < 500, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["field"] == field, r.json()


def test_not_json_at_all_is_a_400(module_master):
    r = module_master.post("/api/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400


def test_unknown_job_is_a_404_problem(module_master):
    r = module_master.request("GET", "/api/jobs/nope")
    assert r.status_code == 404 and r.json()["field"] == "name"


@pytest.mark.parametrize(
    "path, body, field",
    [
        ("/api/groups/porch", {"devices": 5}, "devices"),
        ("/api/roles/porch", {"modules": {"": {}}}, "modules"),
        ("/api/roles/porch", {"jobs": 5}, "jobs"),
    ],
)
def test_a_body_field_named_like_a_service_is_a_400_naming_it(module_master, path, body, field):
    """Litestar took a body field that failed validation for the dependency of the same name: a 500 (fuzzing)."""
    r = module_master.put(path, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field
