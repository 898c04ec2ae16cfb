"""The CLI behind the login: --token / PIFLEET_TOKEN on every API command, `pifleet login` storing a token for
later commands (in a temporary HOME), and the admin commands for tokens and users."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import click

from tests.support.masters import ADMIN, ADMIN_PASSWORD, REPO
from tests.system.auth.conftest import session

AUTH_COMMANDS = {"login", "setup", "token", "user"}  # these log a person in with name and password instead


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PIFLEET_TOKEN", "PIFLEET_URL", "XDG_CONFIG_HOME")}
    return env | {"HOME": str(home)} | extra


def pifleet(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pifleet", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=60
    )


def _commands(group: click.Group, prefix: str = ""):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def test_every_api_command_takes_a_token():
    from pifleet.cli import main

    clients = [(name, cmd) for name, cmd in _commands(main) if any(p.name == "url" for p in cmd.params)]
    assert len(clients) > 20
    for name, command in clients:
        options = {opt for p in command.params for opt in getattr(p, "opts", [])}
        if name.split()[0] in AUTH_COMMANDS:
            assert "--token" not in options and "--user" in options, name
        else:
            assert "--token" in options, f"pifleet {name} has --url but no --token"


def test_the_cli_sends_the_token_given_by_option_or_environment(module_master, tmp_path):
    env = _env(tmp_path)
    url = module_master.url
    out = pifleet("devices", "--url", url, env=env)
    assert out.returncode == 1 and "401" in out.stderr and "pifleet login" in out.stderr, out.stderr
    out = pifleet("devices", "--url", url, "--token", module_master.token, env=env)
    assert out.returncode == 0, out.stderr
    out = pifleet("role", "list", "--url", url, env=env | {"PIFLEET_TOKEN": module_master.token})
    assert out.returncode == 0, out.stderr
    read = session(module_master).post("/api/tokens", json={"name": "ro", "scope": "read"}).json()["secret"]
    out = pifleet("jobs", "run", "nope", "--url", url, "--token", read, env=env)
    assert out.returncode == 1 and "403" in out.stderr and "read-only" in out.stderr, out.stderr


def test_pifleet_login_stores_a_token_that_later_commands_use(module_master, tmp_path):
    url = module_master.url
    env = _env(tmp_path)
    out = pifleet("login", "--url", url, "--user", ADMIN, env=env | {"PIFLEET_PASSWORD": ADMIN_PASSWORD})
    assert out.returncode == 0, out.stderr
    assert "stored in" in out.stdout and ADMIN_PASSWORD not in out.stdout + out.stderr
    path = tmp_path / ".config" / "pifleet" / "token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    first = json.loads(path.read_text())[url]
    assert first.startswith("pft_") and first not in out.stdout

    out = pifleet("devices", "--url", url, env=env)
    assert out.returncode == 0, out.stderr
    assert pifleet("devices", "--url", url.replace("127.0.0.1", "localhost"), env=env).returncode == 1  # another URL

    # logging in again replaces the token (the old one is revoked), and sessions are not left behind
    out = pifleet("login", "--url", url, "--user", ADMIN, env=env | {"PIFLEET_PASSWORD": ADMIN_PASSWORD})
    assert out.returncode == 0, out.stderr
    second = json.loads(path.read_text())[url]
    assert second != first
    admin = session(module_master)
    host_tokens = [t for t in admin.get("/api/tokens").json() if t["name"] == socket.gethostname()]
    assert len(host_tokens) == 1 and host_tokens[0]["scope"] == "write"
    assert pifleet("devices", "--url", url, "--token", first, env=env).returncode == 1

    # wrong password: no token, a clear message
    out = pifleet("login", "--url", url, "--user", ADMIN, env=env | {"PIFLEET_PASSWORD": "not my password"})
    assert out.returncode == 1 and "wrong name or password" in out.stderr


def test_admins_manage_tokens_and_users_from_the_cli(module_master, tmp_path):
    url = module_master.url
    env = _env(tmp_path, PIFLEET_PASSWORD=ADMIN_PASSWORD, PIFLEET_USER=ADMIN)
    out = pifleet("token", "create", "backup-script", "--scope", "read", "--url", url, env=env)
    assert out.returncode == 0, out.stderr
    secret = out.stdout.strip()
    assert secret.startswith("pft_") and "not shown again" in out.stderr
    out = pifleet("token", "list", "--url", url, env=env)
    assert out.returncode == 0 and "backup-script" in out.stdout and secret not in out.stdout
    token_id = next(line.split()[0] for line in out.stdout.splitlines() if "backup-script" in line)
    assert pifleet("devices", "--url", url, "--token", secret, env=_env(tmp_path)).returncode == 0
    out = pifleet("token", "revoke", token_id, "--url", url, env=env)
    assert out.returncode == 0, out.stderr
    assert pifleet("devices", "--url", url, "--token", secret, env=_env(tmp_path)).returncode == 1

    out = pifleet(
        "user", "add", "bob", "--role", "viewer", "--url", url, env=env | {"PIFLEET_NEW_PASSWORD": "bob's own password"}
    )
    assert out.returncode == 0, out.stderr
    out = pifleet("user", "list", "--url", url, env=env)
    assert "bob" in out.stdout and "viewer" in out.stdout
    out = pifleet(
        "token", "list", "--url", url, env=env | {"PIFLEET_USER": "bob", "PIFLEET_PASSWORD": "bob's own password"}
    )
    assert out.returncode == 1 and "403" in out.stderr
    assert pifleet("user", "remove", "bob", "--url", url, env=env).returncode == 0


def test_pifleet_setup_creates_the_first_admin_and_logs_in(fresh_master, tmp_path):
    url = fresh_master.url
    env = _env(tmp_path, PIFLEET_PASSWORD="first admin's password")
    out = pifleet("setup", "--url", url, "--setup-token", "wrong", "--user", "alice", env=env)
    assert out.returncode == 1 and "wrong setup token" in out.stderr
    out = pifleet("setup", "--url", url, "--setup-token", fresh_master.setup_token(), "--user", "alice", env=env)
    assert out.returncode == 0, out.stderr
    assert "admin alice created" in out.stdout
    assert pifleet("devices", "--url", url, env=_env(tmp_path)).returncode == 0
