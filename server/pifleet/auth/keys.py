"""Secrets of login, made and checked: session ids, API tokens, the setup token, CSRF tokens, passwords.

Pure functions (argon2-cffi, hashlib, secrets); nothing is logged here. Random values have 256 bits (the setup
token 192), so a plain SHA-256 of them is what storage keeps; passwords are argon2id with the library's defaults
(RFC 9106's second recommended option: 64 MiB, 3 passes, 4 lanes).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

TOKEN_PREFIX = "pft_"  # API tokens: recognisable in a leaked config file or a secret scanner
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # long enough for any passphrase; bounds the work one request can cause

_hasher = PasswordHasher()
_dummy_hash: str | None = None


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def new_api_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_setup_token() -> str:
    return secrets.token_urlsafe(24)


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def same_digest(secret: str, expected: bytes | None) -> bool:
    return expected is not None and hmac.compare_digest(digest(secret), expected)


def looks_like_api_token(value: str) -> bool:
    return value.startswith(TOKEN_PREFIX) and 20 <= len(value) <= 100


def csrf_for(session_id: str) -> str:
    """The session's CSRF token: derived from the session id (one-way), so it needs no storage, changes with
    every login, and showing it in the page tells nothing about the cookie."""
    mac = hmac.new(session_id.encode(), b"pifleet csrf", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def same_csrf(sent: str | None, expected: str | None) -> bool:
    return bool(sent) and expected is not None and hmac.compare_digest(sent.encode(), expected.encode())


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def warm_up() -> None:
    """Make the dummy hash now, so that even the first unknown name costs what a known one does."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash(secrets.token_urlsafe(16))


def check_password(password_hash: str | None, password: str) -> bool:
    """Constant work whether or not the user exists: an unknown user is checked against a dummy hash."""
    if password_hash is None:
        warm_up()
        password_hash = _dummy_hash  # of a random secret nobody knows: never matches
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
