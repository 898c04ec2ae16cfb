"""The fuzz suite's report: cases run per target, one line each at the end of the run (docs/security.md,
"Fuzzing"), also as JSON in pytest's base temporary directory (fuzz-counts.json)."""

from __future__ import annotations

import json

from .counts import CASES


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not CASES:
        return
    terminalreporter.section("fuzz cases run")
    for target, n in sorted(CASES.items()):
        terminalreporter.write_line(f"fuzz: {target}: {n} cases")
    terminalreporter.write_line(f"fuzz: total: {sum(CASES.values())} cases")
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is not None:
        path = factory.getbasetemp() / "fuzz-counts.json"
        path.write_text(json.dumps(dict(sorted(CASES.items())), indent=1))
        terminalreporter.write_line(f"fuzz: counts written to {path}")
