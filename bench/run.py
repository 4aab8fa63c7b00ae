"""Run taskd's benchmark suite: print a table (figure, baseline, target, met?) and write JSON.

    python bench/run.py                    # the full suite (about 15 minutes on 2 cores)
    python bench/run.py --quick            # the short CI version: fails on a large regression
    python bench/run.py --only idle,cron --json out.json

Benchmarks run one at a time (the machine has few cores). Method and latest figures:
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, Row, busy, settle

# name -> (module, function); in the order they run, cheap first.
BENCHMARKS = {
    "idle": ("bench.idle", "run"),
    "startup": ("bench.startup", "run"),
    "http": ("bench.http_ready", "run"),
    "local": ("bench.local_tasks", "run"),
    "trigger": ("bench.trigger", "run"),
    "latency": ("bench.latency", "run"),
    "docker": ("bench.docker_tasks", "run"),
    "swarm": ("bench.swarm_tasks", "run"),
    "cron": ("bench.cron", "run"),
    "scale": ("bench.scale", "run"),
    "retention": ("bench.retention", "run"),
    "growth": ("bench.growth", "run"),
    "ui": ("bench.ui_pages", "run"),
    "dag": ("bench.external", "dag"),
    "queue": ("bench.external", "queue"),
}


def measure(name: str, quick: bool) -> list[Row]:
    module, func = BENCHMARKS[name]
    # CI machines are the job's own; a developer's may be shared: wait for a quiet moment.
    busy_before = busy() if quick else settle()
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    try:
        rows = getattr(importlib.import_module(module), func)(quick)
    except Exception as exc:
        traceback.print_exc()
        rows = [Row(name, name, None, "", None, error=f"{type(exc).__name__}: {exc}")]
    for row in rows:
        row.detail.setdefault("loadavg_before", load)
        row.detail.setdefault("busy_before", busy_before)
        row.detail.setdefault("bench_seconds", time.perf_counter() - t0)
    return rows


def number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"
    return f"{text} {unit}".strip()


def verdict(row: Row, quick: bool) -> str:
    if row.error:
        return "ERROR"
    if row.skipped:
        return "skipped"
    mark = {True: "yes", False: "NO", None: "-"}[row.met]
    return f"{mark} (REGRESSED)" if quick and row.regressed else mark


def table(rows: list[Row], quick: bool) -> str:
    lines = [("what", "figure", "baseline", "target", "met?")]
    for r in rows:
        target = f"{r.op} {number(r.target, r.unit)}" if r.target is not None else "-"
        figure, baseline = number(r.figure, r.unit), number(r.baseline, r.baseline_unit)
        lines.append((r.what, figure, baseline, target, verdict(r, quick)))
    widths = [max(len(line[i]) for line in lines) for i in range(5)]
    out = []
    for i, line in enumerate(lines):
        out.append("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    # The last line of an error is in the table; the whole of it is in the JSON.
    notes = [f"  {r.name}: {(r.error or r.skipped).strip().splitlines()[-1]}"
             for r in rows if r.error or r.skipped]  # fmt: skip
    return "\n".join(out + (["", *notes] if notes else []))


def markdown(rows: list[Row]) -> str:
    """The table as Markdown, for docs/benchmarks.md (written beside the JSON)."""
    out = ["| what | figure | baseline (same run) | target | met? |", "|---|---|---|---|---|"]
    for r in rows:
        target = f"{r.op} {number(r.target, r.unit)}" if r.target is not None else "-"
        baseline = number(r.baseline, r.baseline_unit)
        if r.baseline_what and r.baseline is not None:
            baseline += f" ({r.baseline_what})"
        mark = verdict(r, quick=False)
        mark = f"**{mark}**" if mark in ("NO", "ERROR") else mark
        out.append(f"| {r.what} | {number(r.figure, r.unit)} | {baseline} | {target} | {mark} |")
    return "\n".join(out) + "\n"


def commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=10,
            check=False,
        )
    except OSError:
        return None
    return done.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI")
    parser.add_argument(
        "--json",
        type=Path,
        help="where to write the figures [bench/results/latest.json, or quick.json with --quick]",
    )
    parser.add_argument("--only", help=f"comma-separated, of: {', '.join(BENCHMARKS)}")
    args = parser.parse_args(argv)
    names = list(BENCHMARKS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BENCHMARKS]
        if unknown:
            parser.error(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    out = args.json or ROOT / "bench" / "results" / ("quick.json" if args.quick else "latest.json")

    started = datetime.datetime.now(datetime.UTC)
    rows: list[Row] = []
    for name in names:
        print(f"== {name}", flush=True)
        found = measure(name, args.quick)
        for row in found:
            print(f"   {row.what}: {number(row.figure, row.unit)} [{verdict(row, args.quick)}]")
        rows += found

    print()
    print(table(rows, args.quick))
    doc = {
        "date": started.isoformat(timespec="seconds"),
        "seconds": (datetime.datetime.now(datetime.UTC) - started).total_seconds(),
        "quick": args.quick,
        "commit": commit(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "rows": [r.to_json() for r in rows],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    out.with_suffix(".md").write_text(markdown(rows))
    print(f"\nwrote {out} and {out.with_suffix('.md').name}")
    failed = [r.name for r in rows if r.error]
    if failed:
        print(f"benchmarks that failed: {', '.join(failed)}")
    # The full suite reports; --quick is the CI gate and also fails on large regressions.
    regressed = [r.name for r in rows if r.regressed and not r.error] if args.quick else []
    if regressed:
        print(f"large regressions (beyond the --quick bounds): {', '.join(regressed)}")
    return 1 if failed or regressed else 0


if __name__ == "__main__":
    sys.exit(main())
