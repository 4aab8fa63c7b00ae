"""The CI step of the benchmark suite: ``bench/run.py --quick`` must pass its generous bounds.

It exits non-zero only on a large regression (a figure far beyond its target, or a benchmark
that failed), so a slow CI machine does not fail it; docs/benchmarks.md has the method.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quick_benchmarks_meet_their_bounds(tmp_path):
    out = tmp_path / "quick.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=880,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert rows, "the suite measured nothing"
    assert not [r["name"] for r in rows if r["error"]]
