"""The REST API's contract as /schema/openapi.json tells it: every operation's error answers (RFC 9457 problem
documents, `application/problem+json`), who may call it (the security schemes), and the request bodies' rules as
strict as their decoders apply them.

Layer: web wiring (Litestar), applied once to the whole app by create_app, so a route added later — by anyone —
documents its errors without a line of its own. What every route answers follows from its shape and from app.py's
access rules:

- 400 when it takes any input (a path or query parameter, a body): decoding failed, `field` names where;
- 401 and 403 unless it is public (app.py's PUBLIC); 403 also on a public route that changes something (a
  cross-site request is refused);
- 404 when its path or its body names something (`/api/jobs/{name}`, a board's port, a role's devices);
- 409 when it changes something named by its path or body: the state does not allow it now;
- 413 when it takes a body: too large;
- 422 when it takes any input: well-formed but refused by a rule beyond the schema (`InvalidError`: a cron
  expression, a time zone, a module's source; a text the database cannot store, a NUL character).

What a route answers beyond that (a conflict, a board that does not answer, too many attempts) it declares with
`opt=problems(ConflictError, BoardError)`, naming the domain errors (pifleet.errors) it lets through.

The schema of a Struct body also says what its decoder refuses: no unknown fields (`forbid_unknown_fields`), the
rules of a mapping's keys (`propertyNames`) and its size (`maxProperties`), as msgspec's own JSON schema says them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Annotated, Any, ClassVar

import msgspec
from litestar import Request, Response
from litestar.config.app import AppConfig
from litestar.constants import RESERVED_KWARGS
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.params import Parameter
from litestar.plugins import InitPlugin, OpenAPISchemaPlugin, ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute
from litestar.typing import FieldDefinition

from ..errors import PifleetError
from ..model import Name
from .problems import MEDIA_TYPE, Problem

SAFE = frozenset({"GET", "HEAD", "OPTIONS"})

_NAME = Name.__metadata__[0]
# A query parameter that filters by a name (device, job): a name as model.Name spells it, or absent
NameFilter = Annotated[
    str | None, Parameter(min_length=_NAME.min_length, max_length=_NAME.max_length, pattern=_NAME.pattern)
]
# An offset into a listing, within what PostgreSQL's integer takes
Offset = Annotated[int, Parameter(ge=0, le=2**31 - 1)]

# How a request proves who sends it (app.py's require_login): an API token, else the session cookie of a login.
SECURITY_SCHEMES = {
    "token": SecurityScheme(
        type="http",
        scheme="bearer",
        description="An API token (pft_…), created by an admin: POST /api/tokens. Scope read: GET only.",
    ),
    "session": SecurityScheme(
        type="apiKey",
        name="pifleet_session",
        security_scheme_in="cookie",
        description="The session cookie of POST /api/login; unsafe requests also send X-CSRF-Token (the login's csrf).",
    ),
}
SECURITY = [{"token": []}, {"session": []}]

GENERIC = {
    400: "Invalid request: a parameter or the body does not fit its schema; `field` names it",
    401: "Not authenticated: no valid API token (Authorization: Bearer pft_…) or session cookie",
    403: "Forbidden: a read-only token or role, no X-CSRF-Token with a session, a cross-site request, or not an admin",
    404: "Not found: nothing has the name or id in the path or the body; `field` names it",
    409: "Conflict: the current state does not allow it (exists already, busy, offline, decided); `field` names why",
    413: "The request body is too large",
    422: "Invalid input: well-formed, but refused by a rule beyond the schema (a cron expression, a time zone, a NUL "
    "character the database cannot store); `field` names the offending input where it is known",
}


def answer_options(request: Request) -> Response | None:
    """OPTIONS lists every method of the path in `Allow` (RFC 9110). Litestar's own answer lists only the methods
    its path had when the first of its handlers was registered (`/api/jobs`: POST but not GET)."""
    if request.method != "OPTIONS":
        return None
    template = request.scope.get("path_template")
    for route in request.app.routes:
        if isinstance(route, HTTPRoute) and route.path_format == template:
            return Response(None, status_code=204, headers={"Allow": ", ".join(sorted(route.methods))})
    return None


@dataclasses.dataclass
class RawBody(Operation):
    """The operation (`operation_class=`) of a route that reads its body itself (`await request.body()`), not as
    `data`: a file, or a document it decodes piece by piece. `raw_body()` makes one."""

    body_media_type: ClassVar[str] = "application/octet-stream"
    body_description: ClassVar[str] = "The file itself"
    body_schema: ClassVar[dict[str, Any]] = {"type": "string", "format": "binary"}

    def __post_init__(self) -> None:
        content = {self.body_media_type: OpenAPIMediaType(schema=_schema(self.body_schema))}
        self.request_body = RequestBody(content=content, description=self.body_description, required=True)


def raw_body(media_type: str, description: str, schema: dict[str, Any] | None = None) -> type[RawBody]:
    """An `operation_class` that documents the body a route reads itself: its media type, what it is, its JSON
    schema (references name components: `{"$ref": "#/components/schemas/JobSpec"}`; default: a file)."""
    attributes = {"body_media_type": media_type, "body_description": description}
    return type("RawBody", (RawBody,), attributes | ({"body_schema": schema} if schema is not None else {}))


def problems(*errors: type[PifleetError]) -> dict[str, Any]:
    """A route's `opt`: the domain errors it answers beyond those every route of its shape answers."""
    return {"problems": errors}


def empty_allowed(*names: str) -> dict[str, Any]:
    """A route's `opt`: query parameters it takes empty (`?since=`) as absent — `allowEmptyValue: true` in the
    schema; any other query parameter refuses an empty value, as Litestar's default `allowEmptyValue: false` says."""
    return {"empty_allowed": names}


def _allowing_empty(base: type[Operation], names: tuple[str, ...]) -> type[Operation]:
    def __post_init__(self: Operation) -> None:
        if hasattr(base, "__post_init__"):
            base.__post_init__(self)  # type: ignore[attr-defined]
        for parameter in self.parameters or []:
            if getattr(parameter, "param_in", None) == "query" and parameter.name in names:
                parameter.allow_empty_value = True

    return dataclasses.dataclass(type("EmptyAllowed", (base,), {"__post_init__": __post_init__}))


def _response(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=Problem, media_type=MEDIA_TYPE, description=description, generate_examples=False)


def _describe(errors: Iterable[type[PifleetError]]) -> dict[int, str]:
    by_status: dict[int, list[str]] = {}
    for error in errors:
        doc = (error.__doc__ or "").strip().splitlines()
        text = f"{error.title}: {doc[0].rstrip('.')}" if doc else error.title
        if text not in by_status.setdefault(error.status, []):
            by_status[error.status].append(text)
    return {status: "; ".join(texts) for status, texts in by_status.items()}


class ApiContract(InitPlugin, ReceiveRoutePlugin, OpenAPISchemaPlugin):
    """Gives each route, as it is registered, the problem answers it gives (see the module's docstring) and the
    security it needs; the app's OpenAPI components get the security schemes. As a schema plugin (listed before
    Litestar's own), it completes each msgspec Struct's schema with what its decoder also refuses and Litestar
    leaves out: unknown fields (`additionalProperties: false` for `forbid_unknown_fields`), and a mapping's key
    rules and size (`propertyNames`, `minProperties`, `maxProperties`), taken from msgspec's own JSON schema."""

    __slots__ = ("public",)

    def __init__(self, public: Iterable[str]) -> None:
        self.public = frozenset(public)

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        config = app_config.openapi_config
        if config is not None:
            for components in config.components if isinstance(config.components, list) else [config.components]:
                components.security_schemes = {**SECURITY_SCHEMES, **(components.security_schemes or {})}
        if app_config.before_request is not None:
            raise ValueError("ApiContract answers OPTIONS in the app's before_request: it has one already")
        app_config.before_request = answer_options
        return app_config

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute):
            return
        public = route.path_format in self.public
        for handler in route.route_handlers:
            methods = set(handler.http_methods)
            signature = handler.parsed_fn_signature.parameters
            dependencies = handler.resolve_dependencies()
            named = "data" in signature  # a document, which may name things
            body = named or issubclass(handler.operation_class, RawBody)
            takes_input = bool(route.path_parameters) or any(
                name == "data" or (name not in dependencies and name not in RESERVED_KWARGS) for name in signature
            )
            statuses: dict[int, str] = {}
            if takes_input:
                statuses[400] = GENERIC[400]
            if takes_input or body:
                statuses[422] = GENERIC[422]
            if not public:
                statuses[401] = GENERIC[401]
            if not public or methods - SAFE:
                statuses[403] = GENERIC[403]
            if route.path_parameters or named:
                statuses[404] = GENERIC[404]
                if methods - SAFE:
                    statuses[409] = GENERIC[409]
            if body:
                statuses[413] = GENERIC[413]
            for status, text in _describe(handler.opt.get("problems", ())).items():
                statuses[status] = text if status not in statuses or status in (401, 403) else statuses[status]
            responses = {status: _response(text) for status, text in sorted(statuses.items())}
            if handler.status_code == 204:  # no content, ever (RFC 9110), whatever the handler's return type says
                responses[204] = ResponseSpec(data_container=None, description="Done; no content")
            handler.responses = {**responses, **(handler.responses or {})}
            if empty := handler.opt.get("empty_allowed"):
                handler.operation_class = _allowing_empty(handler.operation_class, tuple(empty))
            if not public and handler.security is None:
                handler.security = SECURITY

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return not field_definition.is_union and field_definition.is_subclass_of(msgspec.Struct)

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        builtin = next(
            p
            for p in schema_creator.plugins
            if p is not self and not isinstance(p, ApiContract) and p.is_plugin_supported_field(field_definition)
        )
        schema = builtin.to_openapi_schema(field_definition, schema_creator)
        struct = field_definition.type_
        if getattr(struct, "__struct_config__", None) is not None and struct.__struct_config__.forbid_unknown_fields:
            schema.additional_properties = False
        (own,), components = msgspec.json.schema_components([struct], ref_template="#/components/schemas/{name}")
        exact = components[own["$ref"].rsplit("/", 1)[-1]].get("properties", {})
        for key, rules in exact.items():
            if schema.properties and key in schema.properties and "$ref" not in msgspec.json.encode(rules).decode():
                # a leaf: msgspec's rules, item and key rules included; Litestar's format (date-time, uuid) kept
                schema.properties[key] = _keep_format(_schema(rules), schema.properties[key])
        return schema


def _keep_format(exact: Any, litestar: Any) -> Any:
    if isinstance(exact, Schema) and isinstance(litestar, Schema):
        if exact.format is None:
            exact.format = litestar.format
        for mine, theirs in ((exact.any_of or [], litestar.one_of or []), (exact.items, litestar.items)):
            if isinstance(mine, list):
                for a, b in zip(mine, theirs, strict=False):
                    _keep_format(a, b)
            else:
                _keep_format(mine, theirs)
    return exact


_FIELDS = {f.metadata.get("alias", f.name): f.name for f in dataclasses.fields(Schema)}
_FIELDS["exclusiveMaximum"] = "exclusive_maximum"
_ONE = {"items", "propertyNames", "not", "contains", "additionalProperties"}
_MANY = {"anyOf", "oneOf", "allOf", "prefixItems"}


def _schema(rules: dict[str, Any]) -> Schema | Reference:
    """A JSON schema (msgspec's, or a route's raw body's) as Litestar's Schema."""
    if "$ref" in rules:
        return Reference(ref=rules["$ref"])
    kwargs: dict[str, Any] = {}
    for key, value in rules.items():
        if (name := _FIELDS.get(key)) is None:
            continue
        if key in _ONE and isinstance(value, dict):
            value = _schema(value)
        elif key in _MANY:
            value = [_schema(v) for v in value]
        elif key == "properties":
            value = {k: _schema(v) for k, v in value.items()}
        elif key == "type":
            value = [OpenAPIType(v) for v in value] if isinstance(value, list) else OpenAPIType(value)
        kwargs[name] = value
    return Schema(**kwargs)
