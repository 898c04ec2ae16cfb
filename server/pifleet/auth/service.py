"""Login as a service: the first admin by setup token, passwords, sessions, API tokens, users. No HTTP here:
adapters (web/api/auth.py, web/pages/login.py, the guard in app.py) pass in secrets and peer addresses and get
Principals back or domain errors (auth/errors.py).

Logging: INFO for logins, logouts and administration (names and peer addresses only); WARNING for refused
logins, rate limits and unknown API tokens. Never a password, session id, token, or hash — the one exception is
the setup token line, which `pifleet serve` prints on purpose.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import timedelta

import asyncpg

from ..errors import ConflictError, InvalidError, NotFoundError
from . import keys
from . import storage as q
from .errors import ForbiddenError, SetupDoneError, TooManyAttemptsError, UnauthenticatedError
from .limiter import LoginLimiter
from .model import Principal, Role, Scope, TokenCreated, TokenRead, UserRead

log = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
IDLE = timedelta(hours=8)
LIFETIME = timedelta(days=7)
_TOUCH = timedelta(minutes=1)
_WRONG = "wrong name or password"


def _check_name(name: str, field: str = "name") -> None:
    if not NAME.match(name):
        raise InvalidError("a name is 1-64 letters, digits, '_', '.', '@' or '-'", field=field)


def _check_password(password: str) -> None:
    if len(password) < keys.MIN_PASSWORD:
        raise InvalidError(f"a password has at least {keys.MIN_PASSWORD} characters", field="password")
    if len(password) > keys.MAX_PASSWORD:
        raise InvalidError(f"a password has at most {keys.MAX_PASSWORD} characters", field="password")


class AuthService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        idle: timedelta = IDLE,
        lifetime: timedelta = LIFETIME,
        limiter: LoginLimiter | None = None,
    ) -> None:
        self.pool = pool
        self.idle = idle
        self.lifetime = lifetime
        self.limiter = limiter or LoginLimiter()
        self._setup_hash: bytes | None = None
        self._set_up = False
        # argon2 takes 64 MiB and ~0.1 s (more on a Pi) per check: at most two at once, off the event loop
        self._hashing = asyncio.Semaphore(2)

    async def _hash(self, password: str) -> str:
        async with self._hashing:
            return await asyncio.to_thread(keys.hash_password, password)

    async def _verify(self, password_hash: str | None, password: str) -> bool:
        async with self._hashing:
            return await asyncio.to_thread(keys.check_password, password_hash, password)

    # ---- the first admin -----------------------------------------------------------------------------------

    async def prepare_setup(self) -> str | None:
        """A new one-time setup token when nobody can log in yet (else None). Only its hash is kept; the caller
        shows the token to the person at the console."""
        await asyncio.to_thread(keys.warm_up)
        if await self.needs_setup():
            token = keys.new_setup_token()
            self._setup_hash = keys.digest(token)
            return token
        return None

    async def needs_setup(self) -> bool:
        if not self._set_up:
            self._set_up = await q.count_users(self.pool) > 0
        return not self._set_up

    async def setup(self, token: str, name: str, password: str, address: str) -> tuple[str, Principal]:
        """Create the first admin with the setup token, which then stops working; logs the admin in."""
        if not await self.needs_setup():
            self._setup_hash = None
            raise SetupDoneError("the first admin exists already; log in instead", field="token")
        self._limit(("address", address))
        if not keys.same_digest(token, self._setup_hash):
            self.limiter.failed(("address", address))
            log.warning("setup refused from %s: wrong setup token", address)
            raise ForbiddenError("wrong setup token (it is printed on the master's console at start)", field="token")
        _check_name(name)
        _check_password(password)
        user = await q.create_first_user(self.pool, name, "admin", await self._hash(password))
        self._setup_hash = None
        self._set_up = True
        if user is None:
            raise SetupDoneError("the first admin exists already; log in instead", field="token")
        log.info("setup: first admin %s created from %s; the setup token is spent", name, address)
        row = await q.password_of(self.pool, name)
        return await self._open_session(row["id"], row["name"], row["role"], address)

    # ---- login, sessions ------------------------------------------------------------------------------------

    def _limit(self, *keys_: tuple[str, str]) -> None:
        if wait := self.limiter.retry_after(*keys_):
            log.warning(
                "login refused from %s: too many failures (%s), retry in %d s",
                keys_[0][1],
                " and ".join(k for k, _ in keys_),
                wait,
            )
            raise TooManyAttemptsError(f"too many failed attempts; try again in {wait} s", retry_after=wait)

    async def login(
        self, name: str, password: str, address: str, old_session: str | None = None
    ) -> tuple[str, Principal]:
        """A new session (id, principal) for a right name and password. A session id the browser brought along is
        dropped: the id changes at every login (no fixation)."""
        who = ("name", name.casefold()[:64])
        self._limit(("address", address), who)
        row = await q.password_of(self.pool, name) if len(name) <= 64 else None
        ok = await self._verify(row["password_hash"] if row else None, password[: keys.MAX_PASSWORD])
        if not ok or row is None:
            self.limiter.failed(("address", address), who)
            log.warning("login failed from %s for %s", address, f"user {row['name']}" if row else "an unknown name")
            raise UnauthenticatedError(_WRONG, field="password")
        self.limiter.succeeded(("address", address), who)
        if keys.needs_rehash(row["password_hash"]):
            await q.set_password_hash(self.pool, row["id"], await self._hash(password))
        if old_session:
            await q.delete_session(self.pool, keys.digest(old_session))
        return await self._open_session(row["id"], row["name"], row["role"], address)

    async def _open_session(self, user_id: int, name: str, role: Role, address: str) -> tuple[str, Principal]:
        await q.delete_dead_sessions(self.pool, self.idle)
        session_id = keys.new_session_id()
        await q.create_session(self.pool, keys.digest(session_id), user_id, self.lifetime, address)
        log.info("login: %s from %s", name, address)
        return session_id, Principal(
            name=name, via="session", role=role, user_id=user_id, csrf=keys.csrf_for(session_id)
        )

    async def session(self, session_id: str) -> Principal | None:
        if not session_id or len(session_id) > 100:
            return None
        row = await q.live_session(self.pool, keys.digest(session_id), self.idle, _TOUCH)
        if row is None:
            return None
        return Principal(
            name=row["name"], via="session", role=row["role"], user_id=row["id"], csrf=keys.csrf_for(session_id)
        )

    async def logout(self, session_id: str, principal: Principal) -> None:
        await q.delete_session(self.pool, keys.digest(session_id))
        log.info("logout: %s", principal.name)

    # ---- API tokens -----------------------------------------------------------------------------------------

    async def token(self, secret: str, address: str) -> Principal | None:
        if not keys.looks_like_api_token(secret):
            log.warning("malformed API token from %s", address)
            return None
        row = await q.use_token(self.pool, keys.digest(secret), _TOUCH)
        if row is None:
            log.warning("unknown or revoked API token from %s", address)
            return None
        return Principal(
            name=row["name"], via="token", scope=row["scope"], user_id=row["created_by"], token_id=row["id"]
        )

    async def create_token(self, name: str, scope: Scope, by: Principal) -> TokenCreated:
        if not name.strip() or len(name) > 64:
            raise InvalidError("a token's name is 1-64 characters", field="name")
        if by.user_id is None:
            raise ForbiddenError("only a person creates API tokens")
        secret = keys.new_api_token()
        token = await q.create_token(self.pool, name.strip(), scope, keys.digest(secret), by.user_id)
        log.info("API token %d (%s, %s) created by %s", token.id, token.name, scope, by.name)
        return TokenCreated(**{f: getattr(token, f) for f in token.__struct_fields__}, secret=secret)

    async def list_tokens(self) -> list[TokenRead]:
        return await q.list_tokens(self.pool)

    async def revoke_token(self, token_id: int, by: Principal) -> None:
        if not await q.delete_token(self.pool, token_id):
            raise NotFoundError(f"no API token {token_id}", field="id")
        log.info("API token %d revoked by %s", token_id, by.name)

    # ---- users ----------------------------------------------------------------------------------------------

    async def create_user(self, name: str, password: str, role: Role, by: Principal) -> UserRead:
        _check_name(name)
        _check_password(password)
        user = await q.create_user(self.pool, name, role, await self._hash(password))
        if user is None:
            raise ConflictError(f"a user named {name!r} exists", field="name")
        log.info("user %s (%s) created by %s", name, role, by.name)
        return user

    async def list_users(self) -> list[UserRead]:
        return await q.list_users(self.pool)

    async def delete_user(self, name: str, by: Principal) -> None:
        deleted = await q.delete_user(self.pool, name)
        if deleted is None:
            raise ConflictError(f"{name} is the last admin; create another admin first", field="name")
        if not deleted:
            raise NotFoundError(f"no user named {name!r}", field="name")
        log.info("user %s deleted by %s (with their sessions and API tokens)", name, by.name)
