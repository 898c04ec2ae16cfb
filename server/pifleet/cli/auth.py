"""`pifleet setup`, `pifleet login`, `pifleet token …`, `pifleet user …`: logging in from the command line.

REST clients like the rest of the CLI. `login` (and `setup`) log a person in with name and password, create a
`write` API token named after this host and keep it for later commands (client.store_token); the session they
used ends at once. Administering tokens and users needs a person's password each time (an API token never
administers credentials): these commands ask for it, or read PIFLEET_PASSWORD (for scripts). So they take --url
but no --token.

Layer: CLI adapter; it imports only cli.client.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

import click
import httpx

from .client import check, local_time, store_token, stored_tokens, table, url_option


def _user_option(fn):
    return click.option(
        "--user",
        "user",
        envvar="PIFLEET_USER",
        prompt="name",
        help="Your name on the master (an admin's for token and user commands).",
    )(fn)


def _password(prompt: str = "password") -> str:
    return os.environ.get("PIFLEET_PASSWORD") or click.prompt(prompt, hide_input=True)


@contextlib.contextmanager
def _session(url: str, name: str, password: str, setup_token: str | None = None) -> Iterator[httpx.Client]:
    """A logged-in client (session cookie, CSRF header) for the commands' few calls; logged out afterwards."""
    with httpx.Client(base_url=url.rstrip("/"), timeout=30) as client:
        try:
            if setup_token is None:
                me = check(client.post("/api/login", json={"name": name, "password": password}))
            else:
                me = check(client.post("/api/setup", json={"token": setup_token, "name": name, "password": password}))
        except httpx.HTTPError as exc:
            raise click.ClickException(f"cannot reach the master at {url}: {exc}") from None
        client.headers["X-CSRF-Token"] = me["csrf"]
        try:
            yield client
        finally:
            with contextlib.suppress(httpx.HTTPError):
                client.post("/api/logout")


def _keep_token(url: str, client: httpx.Client, name: str) -> None:
    """Create this host's write token, store it, and revoke the one it replaces (if it is still valid)."""
    old = stored_tokens().get(url.rstrip("/"))
    if old:
        with contextlib.suppress(httpx.HTTPError):
            me = client.get("/api/me", headers={"Authorization": f"Bearer {old}"})
            if me.status_code == 200 and me.json().get("token_id"):
                client.delete(f"/api/tokens/{me.json()['token_id']}")
    token = check(client.post("/api/tokens", json={"name": socket.gethostname(), "scope": "write"}))
    path = store_token(url, token["secret"])
    click.echo(f"logged in as {name}; API token {token['id']} ({token['name']}, write) stored in {path}")


@click.command()
@url_option
@_user_option
def login(url, user) -> None:
    """Log in with your name and password; later commands use the API token this stores (~/.config/pifleet)."""
    with _session(url, user, _password()) as client:
        _keep_token(url, client, user)


@click.command()
@url_option
@click.option("--setup-token", prompt="setup token", help="The token from the master's `setup token: …` line.")
@_user_option
def setup(url, setup_token, user) -> None:
    """Create the first admin with the setup token the master printed at its first start, and log in."""
    password = os.environ.get("PIFLEET_PASSWORD") or click.prompt("password", hide_input=True, confirmation_prompt=True)
    with _session(url, user, password, setup_token=setup_token.strip()) as client:
        click.echo(f"admin {user} created")
        _keep_token(url, client, user)


# ---- API tokens ------------------------------------------------------------------------------------------------


@click.group()
def token() -> None:
    """API tokens for scripts (admin): create (shown once), list, revoke."""


@token.command("create")
@url_option
@_user_option
@click.argument("name")
@click.option(
    "--scope",
    type=click.Choice(["read", "write"]),
    default="read",
    show_default=True,
    help="read: GET only; write: everything but users and tokens.",
)
def token_create(url, user, name, scope) -> None:
    """Create an API token NAME; its secret is printed now and never again."""
    with _session(url, user, _password()) as client:
        created = check(client.post("/api/tokens", json={"name": name, "scope": scope}))
    click.echo(
        f"API token {created['id']} ({created['name']}, {created['scope']}); keep it, it is not shown again:", err=True
    )
    click.echo(created["secret"])


@token.command("list")
@url_option
@_user_option
def token_list(url, user) -> None:
    """API tokens: id, name, scope, who created them, last use (never the secrets)."""
    with _session(url, user, _password()) as client:
        items = check(client.get("/api/tokens"))
    table(
        [
            [
                str(t["id"]),
                t["name"],
                t["scope"],
                t["created_by"] or "-",
                local_time(url, t["created_at"]),
                local_time(url, t["last_used_at"], "never"),
            ]
            for t in items
        ],
        ["ID", "NAME", "SCOPE", "CREATED BY", "CREATED", "LAST USED"],
    )


@token.command("revoke")
@url_option
@_user_option
@click.argument("token_id", metavar="ID", type=int)
def token_revoke(url, user, token_id) -> None:
    """Revoke API token ID: refused from now on."""
    with _session(url, user, _password()) as client:
        check(client.delete(f"/api/tokens/{token_id}"))
    click.echo(f"API token {token_id} revoked")


# ---- users -----------------------------------------------------------------------------------------------------


@click.group()
def user() -> None:
    """People who log in (admin): add, list, remove."""


@user.command("add")
@url_option
@_user_option
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["viewer", "admin"]),
    default="viewer",
    show_default=True,
    help="viewer: read-only; admin: everything, users and tokens included.",
)
def user_add(url, user, name, role) -> None:
    """Add a person NAME (asks for their password, twice)."""
    admin_password = _password(f"password of {user}")
    password = os.environ.get("PIFLEET_NEW_PASSWORD") or click.prompt(
        f"new password for {name}", hide_input=True, confirmation_prompt=True
    )
    with _session(url, user, admin_password) as client:
        created = check(client.post("/api/users", json={"name": name, "password": password, "role": role}))
    click.echo(f"user {created['name']} ({created['role']}) added")


@user.command("list")
@url_option
@_user_option
def user_list(url, user) -> None:
    """People and their roles."""
    with _session(url, user, _password()) as client:
        items = check(client.get("/api/users"))
    table([[u["name"], u["role"], local_time(url, u["created_at"])] for u in items], ["NAME", "ROLE", "SINCE"])


@user.command("remove")
@url_option
@_user_option
@click.argument("name")
def user_remove(url, user, name) -> None:
    """Remove person NAME with their sessions and API tokens (never the last admin)."""
    with _session(url, user, _password()) as client:
        check(client.delete(f"/api/users/{name}"))
    click.echo(f"user {name} removed")


COMMANDS = [login, setup, token, user]
