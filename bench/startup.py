"""Start to serving: spawn ``taskd serve`` until its first ``GET /ready`` answers 200.

Figure: on a store of 1,000,000 finished tasks (10,000 runs x 100); baseline: on an empty
store, in the same run. The median of a few starts each.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from bench.bigstore import copy_store
from bench.common import Daemon, Row


def starts(db: Path, n: int) -> list[float]:
    out = []
    for _ in range(n):
        with Daemon(db) as daemon:
            out.append(daemon.start())
    return out


def run(quick: bool) -> list[Row]:
    runs, tasks, n = (1000, 100, 2) if quick else (10_000, 100, 3)
    with tempfile.TemporaryDirectory(prefix="taskd-bench-") as tmp:
        empty = starts(Path(tmp) / "empty.db", n)
        big = starts(copy_store(runs, tasks, Path(tmp) / "big.db"), n)
    return [
        Row(
            "startup",
            f"start to serving, {runs * tasks:,} finished tasks in the store",
            statistics.median(big),
            "s",
            1.0,
            "<=",
            baseline=statistics.median(empty),
            baseline_unit="s",
            baseline_what="start to serving on an empty store",
            detail={"big_s": big, "empty_s": empty, "tasks": runs * tasks},
        )
    ]
