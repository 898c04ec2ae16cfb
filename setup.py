"""Packaging only: the wheel carries the repository's data folders (sql/, dashboard/, micropython/,
capabilities/) inside the package as pifleet/_data/NAME, where pifleet.resources looks first.

The folders stay at the repository's top level (the card's layout); build_py copies them into the build at
wheel time. An editable install copies nothing: pifleet.resources finds them in the checkout. Everything else
about the package is declared in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DATA = ("sql", "dashboard", "micropython", "capabilities")  # pifleet.resources' names
ROOT = Path(__file__).resolve().parent


class build_py_with_data(build_py):
    def run(self):
        super().run()
        if self.editable_mode:
            return
        for name in DATA:
            target = Path(self.build_lib) / "pifleet" / "_data" / name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(ROOT / name, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))


setup(cmdclass={"build_py": build_py_with_data})
