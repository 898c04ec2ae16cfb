# The board's parameter check (agent/schema.py) over the shared vectors; prints the field each case is refused
# by (null when accepted) as one JSON list. Written for both interpreters: `micropython schema_runner.py VECTORS`
# and CPython, so one test checks both against the master's own check.
import json
import sys

from agent.schema import validate

with open(sys.argv[1]) as f:
    vectors = json.load(f)
out = []
for case in vectors["cases"]:
    problem = validate(vectors["schema"][case["command"]], case["params"])
    out.append(problem[0] if problem else None)
print(json.dumps(out))
