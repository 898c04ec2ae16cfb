"""How many cases each fuzz target ran in this session: printed at the end of the run (conftest.py) and written
to fuzz-counts.json in pytest's base temporary directory, whatever the capture and verbosity options."""

from __future__ import annotations

from collections import Counter

CASES: Counter[str] = Counter()


def record(target: str, n: int = 1) -> None:
    CASES[target] += n
