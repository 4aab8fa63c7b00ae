"""The fuzzing figures, at the end of pytest's summary: cases run and time per phase."""

from __future__ import annotations

import collections
import sys

SECONDS: collections.Counter[str] = collections.Counter()  # per phase, e.g. "deep admin"


def pytest_runtest_logreport(report) -> None:
    if report.when == "call" and "test_schemathesis.py::" in report.nodeid:
        test = report.nodeid.split("::")[1].split("[")[0]
        SECONDS[test.removeprefix("test_").replace("_", " ")] += report.duration


def pytest_terminal_summary(terminalreporter) -> None:
    fuzz = sys.modules.get("tests.fuzz.test_schemathesis")
    if fuzz is None or not fuzz.COUNTS:
        return
    terminalreporter.section("API fuzzing (Schemathesis)")
    for phase, n in sorted(fuzz.COUNTS.items()):
        if phase.endswith("restarts"):  # fresh state-machine runs after a Flaky replay
            terminalreporter.write_line(f"{phase}: {n}")
        else:
            terminalreporter.write_line(f"{phase}: {n} cases in {SECONDS[phase]:.1f}s")
