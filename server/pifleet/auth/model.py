"""Wire shapes of login, users and API tokens, and the Principal a request acts as. Pure data.

Secrets appear in exactly two shapes: what a person sends (passwords, the setup token) and `TokenCreated`, the
one answer that shows an API token's secret. Nothing read back from storage carries a secret or a hash.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from msgspec import Meta, Struct, field

from .keys import MAX_PASSWORD, MIN_PASSWORD

Role = Literal["admin", "viewer"]
Scope = Literal["read", "write"]
# What the service checks too (auth.service), said here so that the schema tells a client
UserName = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")]
Password = Annotated[str, Meta(min_length=MIN_PASSWORD, max_length=MAX_PASSWORD)]
TokenName = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"\S")]  # not only blanks


class LoginRequest(Struct, forbid_unknown_fields=True):
    name: str
    password: str


class SetupRequest(Struct, forbid_unknown_fields=True):
    token: Annotated[str, Meta(max_length=256)]
    name: UserName
    password: Password


class UserCreate(Struct, forbid_unknown_fields=True):
    name: UserName
    password: Password
    role: Role = "viewer"


class UserRead(Struct):
    name: str
    role: Role
    created_at: datetime


class TokenCreate(Struct, forbid_unknown_fields=True):
    name: TokenName
    scope: Scope = "read"


class TokenRead(Struct):
    id: int
    name: str
    scope: Scope
    created_by: str | None
    created_at: datetime
    last_used_at: datetime | None


class TokenCreated(TokenRead):
    secret: str  # shown once, here; only its SHA-256 is kept


class Principal(Struct, frozen=True):
    """Who a request acts as: a person by session cookie, or a script by API token."""

    name: str  # the person's name, or the token's
    via: Literal["session", "token"]
    role: Role | None = None  # a person's role (sessions)
    scope: Scope | None = None  # a token's scope
    user_id: int | None = None  # the person (for a token: who created it)
    token_id: int | None = None
    csrf: str | None = field(default=None)  # sessions: what unsafe requests must echo (X-CSRF-Token / _csrf)

    @property
    def is_admin(self) -> bool:
        """Users and tokens are administered by a person with the admin role, never by a token."""
        return self.via == "session" and self.role == "admin"

    @property
    def may_write(self) -> bool:
        return self.role == "admin" if self.via == "session" else self.scope == "write"


class Me(Struct):
    """GET /api/me, and the answer to a login or setup."""

    name: str
    via: Literal["session", "token"]
    role: Role | None
    scope: Scope | None
    csrf: str | None
    token_id: int | None = None  # the API token this request came with (so `pifleet login` can replace it)

    @classmethod
    def of(cls, p: Principal) -> Me:
        return cls(name=p.name, via=p.via, role=p.role, scope=p.scope, csrf=p.csrf, token_id=p.token_id)
