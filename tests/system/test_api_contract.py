"""The API contract as a client generator reads it from a running master (issue 13, item 9; docs/api.md): every
operation documents its error answers as problem documents and who may call it, request bodies carry the rules
their decoders apply, and the answers a client gets are the documented ones — a 405 with `Allow`, an OPTIONS
that lists every method. The whole contract is checked by `schemathesis run --checks all` in tests/fuzz."""

from __future__ import annotations

import httpx
import pytest

PROBLEM = {"$ref": "#/components/schemas/Problem"}
PUBLIC = {"health", "login", "setup"}  # app.py's PUBLIC, by operation id
METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def schema(module_master):
    r = httpx.get(module_master.url + "/schema/openapi.json", headers=module_master.headers, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_every_operation_documents_its_errors_as_problems(schema):
    operations = list(_operations(schema))
    assert len(operations) >= 60
    for path, method, op in operations:
        where = f"{method.upper()} {path} ({op['operationId']})"
        responses = op["responses"]
        errors = {int(s) for s in responses if s[0] == "4" or s[0] == "5"}
        for status in errors:
            content = responses[str(status)].get("content", {})
            assert content == {"application/problem+json": {"schema": PROBLEM}}, (where, status, content)
        if op["operationId"] not in PUBLIC:
            assert {401, 403} <= errors, where
            assert op.get("security") == [{"token": []}, {"session": []}], where
        if op.get("parameters"):
            assert 400 in errors, where
        if "{" in path:
            assert 404 in errors, where
        if "requestBody" in op:
            assert {413, 422} <= errors, where
        for status, response in responses.items():
            if status == "204":
                assert "content" not in response, where  # a 204 has no body

    problem = schema["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"} and "field" in problem["properties"]
    schemes = schema["components"]["securitySchemes"]
    assert schemes["token"] == schemes["token"] | {"type": "http", "scheme": "bearer"}
    assert schemes["session"] | {"in": "cookie", "name": "pifleet_session"} == schemes["session"]


def test_declared_errors_and_request_rules_are_in_the_schema(schema):
    paths = schema["paths"]
    assert {"409", "502"} <= set(paths["/api/devices/{name}/stats"]["get"]["responses"])  # offline, no answer
    assert {"401", "429"} <= set(paths["/api/login"]["post"]["responses"])  # wrong password, too many tries
    assert {"200", "201"} <= set(paths["/api/jobs"]["post"]["responses"])  # replaced, or created

    components = schema["components"]["schemas"]
    role = components["RoleSpec"]
    assert role["additionalProperties"] is False  # forbid_unknown_fields, as the decoder
    assert role["properties"]["modules"]["propertyNames"]["pattern"] == "^[A-Za-z0-9][A-Za-z0-9_.-]*$"
    assert role["properties"]["modules"]["maxProperties"] == 32
    assign = components["RoleAssign"]["properties"]["devices"]
    assert assign["items"]["maxLength"] == 64 and assign["minItems"] == 1  # the rules of each item, too
    user = components["UserCreate"]["properties"]
    assert user["password"]["minLength"] == 10 and user["role"]["enum"] == ["admin", "viewer"]
    assert components["AtTrigger"]["properties"]["at"]["format"] == "date-time"
    offset = next(p for p in paths["/api/executions"]["get"]["parameters"] if p["name"] == "offset")
    assert offset["schema"]["maximum"] == 2**31 - 1
    upload = paths["/api/firmware"]["post"]["requestBody"]["content"]
    assert upload == {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


def test_answers_are_the_documented_ones(module_master, schema):
    r = module_master.request("TRACE", "/api/jobs")
    assert r.status_code == 405 and r.headers["content-type"] == "application/problem+json"
    documented = {m.upper() for m in schema["paths"]["/api/jobs"] if m in METHODS}
    assert set(r.headers["allow"].replace(" ", "").split(",")) >= documented  # RFC 9110: 405 says what is allowed

    r = module_master.request("OPTIONS", "/api/jobs")
    assert r.status_code == 204
    assert set(r.headers["allow"].replace(" ", "").split(",")) == documented | {"OPTIONS"}

    r = module_master.request("PATCH", "/static/pifleet.css")  # the static files refuse with Allow too
    assert r.status_code == 405 and {"GET", "HEAD"} <= set(r.headers["allow"].replace(" ", "").split(","))

    r = module_master.request("GET", "/api/jobs/no-such-job")
    assert r.status_code == 404 and "404" in schema["paths"]["/api/jobs/{name}"]["get"]["responses"]
    assert r.json()["field"] == "name" and r.headers["content-type"] == "application/problem+json"

    r = module_master.put("/api/roles/r1", json={"modules": {"bad name!": {}}})
    assert r.status_code == 400 and r.json()["field"] == "modules"  # the key rule the schema states

    r = httpx.get(module_master.url + "/api/devices", timeout=30)
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="pifleet"'
