"""pifleet.resources: data directories come from the installed package first, else from the source checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from pifleet import resources
from tests.support.masters import REPO


@pytest.fixture
def fake_install(tmp_path, monkeypatch) -> Path:
    """A package directory at CHECKOUT/server/pifleet, seen by importlib.resources.files('pifleet')."""
    package = tmp_path / "checkout" / "server" / "pifleet"
    package.mkdir(parents=True)
    monkeypatch.setattr(resources, "files", lambda name: package if name == "pifleet" else None)
    resources.find.cache_clear()
    yield package
    resources.find.cache_clear()


def test_the_source_checkout_is_found_from_this_package():
    assert resources.sql() == REPO / "sql"
    assert (resources.sql() / "0001_init.sql").is_file()
    assert (resources.dashboard() / "templates").is_dir()
    assert (resources.agent() / "agent").is_dir() and (resources.agent() / "shims").is_dir()
    assert (resources.capabilities() / "blind.py").is_file()
    assert (resources.host_capabilities() / "db.py").is_file()


def test_packaged_data_comes_before_the_checkout(fake_install):
    (fake_install.parent.parent / "capabilities").mkdir()
    packaged = fake_install / "_data" / "capabilities"
    packaged.mkdir(parents=True)
    assert resources.capabilities() == packaged / "board"


def test_without_packaged_data_the_checkout_is_used(fake_install):
    (fake_install.parent.parent / "sql").mkdir()
    assert resources.sql() == fake_install.parent.parent / "sql"


def test_a_missing_directory_names_both_places(fake_install):
    with pytest.raises(resources.ResourceMissingError, match=r"dashboard/.*_data/dashboard.*checkout/dashboard"):
        resources.dashboard()
