"""schemathesis hooks for the API fuzz run (SCHEMATHESIS_HOOKS=tests.fuzz.hooks, set by test_api_schemathesis.py):
what must not happen for real is replaced, just before each call, by what is refused just the same.

- a probe or a flash names a port that cannot exist, so nothing ever touches a serial device;
- the first admin is never the one deleted (the tests' token cannot delete users anyway: 403).
"""

from __future__ import annotations

import schemathesis

NO_PORT = "/dev/pifleet-fuzz-no-such-port"
ADMIN = "admin"  # tests/support/masters.py


@schemathesis.hook
def before_call(context, case, **kwargs):
    operation = case.operation.definition.raw.get("operationId")
    if operation in ("probeUsbBoard", "startFlash") and isinstance(case.body, dict) and "port" in case.body:
        case.body["port"] = NO_PORT
    if operation == "deleteUser" and case.path_parameters and case.path_parameters.get("name") == ADMIN:
        case.path_parameters["name"] = ADMIN + "-not"
