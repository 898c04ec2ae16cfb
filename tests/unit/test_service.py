"""`pifleet service install|uninstall`: the systemd unit for `pifleet serve`, as the keeper of a Pi reads it and
as systemd checks it (`systemd-analyze verify`, where systemd is installed)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pifleet.cli import main
from pifleet.cli.service import render_unit

USER = "nobody"  # an ordinary account every Debian has


def _install(tmp_path: Path, *args: str):
    return CliRunner().invoke(
        main, ["service", "install", "--user", USER, "--unit-dir", str(tmp_path / "units"), *args]
    )


def _settings(unit: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def _verify(unit: Path) -> None:
    """systemd's own check of the unit: it must pass without a complaint about what the unit says."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here (Debian: apt install systemd): the unit is not verified")
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    complaints = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if line.strip() and "Special user nobody configured" not in line  # the test's stand-in user
    ]
    assert done.returncode == 0 and not complaints, "\n".join(complaints)


def test_install_writes_a_hardened_unit_for_serve_and_says_how_to_enable_it(tmp_path):
    data = tmp_path / "data"
    result = _install(tmp_path, "--data-dir", str(data), "--coap-host", "192.168.1.2")
    assert result.exit_code == 0, result.output
    unit_path = tmp_path / "units" / "pifleet.service"
    unit = unit_path.read_text()
    assert f"wrote {unit_path}:" in result.output and unit in result.output
    assert "sudo systemctl enable --now pifleet" in result.output
    settings = _settings(unit)
    script = Path(sys.executable).parent / "pifleet"
    assert settings["ExecStart"] == [f"{script} serve --host 127.0.0.1 --coap-host 192.168.1.2 --data-dir {data}"]
    assert settings["User"] == [USER]
    assert settings["Restart"] == ["on-failure"]
    assert settings["SupplementaryGroups"] == ["dialout"]  # the boards' serial ports
    for hardening in ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "CapabilityBoundingSet="):
        assert hardening in unit.splitlines()
    assert settings["ReadWritePaths"] == [str(data)]
    # nothing that closes /dev: flashing needs the serial ports
    assert not {"PrivateDevices", "DeviceAllow", "DevicePolicy", "ProtectClock"} & settings.keys()
    assert settings["ProtectHome"][0] in ("yes", "read-only")
    assert settings["WantedBy"] == ["multi-user.target"]
    assert data.is_dir() and data.stat().st_mode & 0o777 == 0o700  # ReadWritePaths= needs it before the start
    _verify(unit_path)


def test_odd_paths_are_quoted_for_systemd(tmp_path):
    data = tmp_path / "my data 100%"
    assert _install(tmp_path, "--data-dir", str(data)).exit_code == 0
    unit_path = tmp_path / "units" / "pifleet.service"
    settings = _settings(unit_path.read_text())
    quoted = '"' + str(data).replace("%", "%%") + '"'
    assert settings["ExecStart"][0].endswith(f"--data-dir {quoted}")
    assert settings["ReadWritePaths"] == [quoted]
    assert settings["WorkingDirectory"] == [str(data).replace("%", "%%")]  # one path, never quoted
    _verify(unit_path)


def test_a_home_directory_stays_readable_when_the_master_lives_there():
    unit = render_unit("pi", Path("/home/pi/.local/share/pifleet"), "0.0.0.0", ["/home/pi/.local/bin/pifleet"])
    settings = _settings(unit)
    assert settings["ProtectHome"] == ["read-only"]
    assert settings["ReadWritePaths"] == ["/home/pi/.local/share/pifleet"]


@pytest.mark.parametrize(
    ("user", "refusal"), [("root", "ordinary user, not root"), ("no-such-user-here", "no user 'no-such-user-here'")]
)
def test_install_refuses_root_and_unknown_users(tmp_path, user, refusal):
    result = CliRunner().invoke(main, ["service", "install", "--user", user, "--unit-dir", str(tmp_path / "units")])
    assert result.exit_code == 1 and refusal in result.output
    assert not (tmp_path / "units" / "pifleet.service").exists()


def test_uninstall_removes_the_unit_but_not_an_enabled_one_or_a_foreign_one(tmp_path):
    units = tmp_path / "units"
    assert _install(tmp_path, "--data-dir", str(tmp_path / "data")).exit_code == 0
    unit = units / "pifleet.service"
    wants = units / "multi-user.target.wants"
    wants.mkdir()
    (wants / "pifleet.service").symlink_to(unit)  # what `systemctl enable` leaves
    result = CliRunner().invoke(main, ["service", "uninstall", "--unit-dir", str(units)])
    assert result.exit_code == 1 and "systemctl disable --now pifleet" in result.output and unit.exists()
    (wants / "pifleet.service").unlink()
    result = CliRunner().invoke(main, ["service", "uninstall", "--unit-dir", str(units)])
    assert result.exit_code == 0 and f"removed {unit}" in result.output and not unit.exists()
    assert (tmp_path / "data").is_dir()  # the data directory stays
    unit.write_text("[Service]\nExecStart=/bin/true\n")  # someone's own unit of that name
    result = CliRunner().invoke(main, ["service", "uninstall", "--unit-dir", str(units)])
    assert result.exit_code == 1 and re.search("not written by `pifleet service install`", result.output)
    assert unit.exists()
