"""Checks command parameters against a capability's declared schema (docs/protocol.md, "Parameter schema").

Layer: device side, pure. The master validates before it sends; the board checks again because it must never
act on a value that is out of range. It returns the first problem as (field, message) and never raises for
bad input.
"""


def _is_number(value):
    # bool is an int in CPython (not in MicroPython); a JSON true is never a number here.
    return (isinstance(value, int) or isinstance(value, float)) and not isinstance(value, bool)


def _check(spec, value):
    """None if value fits spec, else a message saying why not."""
    kind = spec.get("type")
    if kind == "number":
        if not _is_number(value):
            return "must be a number"
    elif kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            return "must be an integer"
    elif kind == "string":
        if not isinstance(value, str):
            return "must be a string"
    elif kind == "boolean":
        if not isinstance(value, bool):
            return "must be true or false"
    elif kind == "list":
        # a JSON array (e.g. the arguments of a parameterised SQL statement); items are the handler's to check
        if not isinstance(value, list):
            return "must be a list"
    elif kind == "object":
        if not isinstance(value, dict):
            return "must be an object"
    elif kind == "enum":
        # a value is a string or an integer; `True in [1]` holds in Python, so booleans are refused first
        if isinstance(value, bool) or not isinstance(value, (str, int)) or value not in spec.get("values", ()):
            return "must be one of " + ", ".join(str(v) for v in spec.get("values", ()))
        return None
    else:
        return "has an unknown type in the capability's schema"
    if kind in ("number", "integer"):
        low = spec.get("min")
        high = spec.get("max")
        if low is not None and value < low:
            return "must be at least %s" % low
        if high is not None and value > high:
            return "must be at most %s" % high
    return None


def validate(command_schema, params):
    """Check params (a dict) against {name: spec}. Return None or (field, message)."""
    if not isinstance(params, dict):
        return "params", "must be an object"
    for name in params:
        if name not in command_schema:
            return "params." + str(name), "is not a parameter of this command"
    for name, spec in command_schema.items():
        if name not in params:
            if spec.get("required", True):
                return "params." + name, "is required"
            continue
        problem = _check(spec, params[name])
        if problem:
            return "params." + name, problem
    return None
