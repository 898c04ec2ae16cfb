"""The domain errors of login and access. Each carries its HTTP status (web/problems.py maps it once); the 401
and 429 ones get their headers (WWW-Authenticate, Retry-After) and the dashboard's redirect in app.py."""

from __future__ import annotations

from ..errors import PifleetError


class UnauthenticatedError(PifleetError):
    """No valid session or API token (missing, expired, revoked, or wrong)."""

    status = 401
    title = "Not authenticated"


class ForbiddenError(PifleetError):
    """Authenticated, but not allowed: a read-only role or token, a missing CSRF token, not an admin."""

    status = 403
    title = "Forbidden"


class TooManyAttemptsError(PifleetError):
    status = 429
    title = "Too many attempts"

    def __init__(self, detail: str, *, retry_after: int, field: str | None = None) -> None:
        super().__init__(detail, field=field)
        self.retry_after = retry_after


class SetupDoneError(PifleetError):
    """The first admin exists: the setup token is spent."""

    status = 409
    title = "Already set up"
