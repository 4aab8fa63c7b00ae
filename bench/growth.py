"""Growth: how time and peak memory grow with the size of the work, and a plot of it.

Curves (each point in a fresh process, so its peak RSS is its own):

- fan-out of N independent ``/bin/true`` tasks, submit to the run's end (in-process, 16 slots);
- chain of N ``/bin/true`` tasks, each after the one before, submit to the run's end;
- a layered DAG of N tasks posted to ``taskd serve`` (``POST /v1/dagrun``): accepted and stored;
- list and search endpoints of ``taskd serve`` on stores of N finished tasks (``bigstore.py``).

Each curve also gives one row with a target: its growth exponent between its two largest
sizes, ``log(t2 / t1) / log(n2 / n1)``; 1 is linear, below 1 is better than linear.
The PNG (``bench/results/growth.png``) needs matplotlib (``pip install 'taskd[bench]'``).
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.common import HEADERS, ROOT, Daemon, Row, pct

PLOT = ROOT / "bench" / "results" / "growth.png"
# The largest store, 10M tasks, takes about 5 minutes and 7.5 GB to build (once, cached).
FULL = {
    "fanout": [10, 100, 1000, 10_000],
    "chain": [5, 20, 100],
    "dag": [1000, 10_000, 100_000],
    "store": [10_000, 100_000, 1_000_000, 10_000_000],
}
QUICK = {
    "fanout": [10, 100, 1000],
    "chain": [5, 20],
    "dag": [1000, 10_000],
    "store": [10_000, 100_000],
}
STORE_PATHS = {
    "newest 100 processes": "/api/processes/?max_records=100",
    "newest 100 tasks": "/api/tasks?limit=100",
    "newest 100 failed tasks": "/api/tasks?allowed_statuses=failed&limit=100",
    "metrics": "/_internal_/metrics",
}
LINEAR = 1.2  # an exponent up to this counts as linear (fixed costs and noise bend the curve)


def peak_rss_mb(pid: str | int = "self") -> float:
    """The peak resident set (VmHWM) of a process, in MB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


# -- children: one point each --------------------------------------------------------------


async def _local_run(n: int, chain: bool) -> float:
    from bench.local_tasks import close_services, open_services, plan, settings
    from taskd.models import JobSpec, RunState, TaskTemplate

    with tempfile.TemporaryDirectory(prefix="taskd-bench-") as tmp:
        svc = await open_services(settings(Path(tmp) / "growth.db"))
        try:
            job = JobSpec(runner="local", command=("/bin/true",))
            templates = [
                TaskTemplate(f"t{i}", job, parents=[(f"t{i - 1}", True)] if chain and i else [])
                for i in range(n)
            ]
            t0 = time.perf_counter()
            run = await svc.engine.submit(plan(templates))
            await asyncio.wait_for(run.done.wait(), 900)
            seconds = time.perf_counter() - t0
            if run.state is not RunState.SUCCEEDED:
                raise RuntimeError(f"the run ended {run.state}")
            return seconds
        finally:
            await close_services(svc)


def child(kind: str, n: int) -> None:
    seconds = asyncio.run(_local_run(n, chain=kind == "chain"))
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_mb()}))


def local_point(kind: str, n: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.growth", kind, str(n)],
        capture_output=True, text=True, cwd=ROOT, timeout=1200, check=False,
    )  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"growth {kind} {n}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- points against a real server ----------------------------------------------------------


def dag_point(n: int) -> dict[str, float]:
    from bench.bench_dag import make_dag

    body = orjson.dumps(make_dag(n, "layered"))

    async def post(url: str) -> float:
        async with aiohttp.ClientSession(url, headers=HEADERS) as session:
            t0 = time.perf_counter()
            async with session.post("/v1/dagrun", data=body) as resp:
                text = await resp.read()
                if resp.status >= 300:
                    raise RuntimeError(f"POST /v1/dagrun: {resp.status} {text[:300]!r}")
            return time.perf_counter() - t0

    big = ("--max-body-bytes", str(256 << 20))
    # Two slots: the tasks it starts afterwards should not crowd the next point.
    with (
        tempfile.TemporaryDirectory(prefix="taskd-bench-") as tmp,
        Daemon(Path(tmp) / "dag.db", *big, max_parallel=2) as d,
    ):
        d.start()
        seconds = asyncio.run(post(d.url))
        return {"seconds": seconds, "peak_rss_mb": peak_rss_mb(d.pid), "body_mb": len(body) / 1e6}


def store_point(n: int) -> dict[str, Any]:
    from bench.bigstore import copy_store
    from bench.scale import timings

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="taskd-bench-") as tmp:
        db = copy_store(max(1, n // 100), 100, Path(tmp) / "store.db")
        with Daemon(db) as d:
            d.start()
            for label, path in STORE_PATHS.items():
                ms = [s * 1000 for s in asyncio.run(timings(d.url, path, 30, 3.0))]
                out[label] = {"p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99), "samples": len(ms)}
            out["peak_rss_mb"] = peak_rss_mb(d.pid)
    return out


# -- rows and the plot ---------------------------------------------------------------------


def exponent(points: list[tuple[int, float]]) -> float | None:
    """Growth exponent between the two largest sizes (1: linear)."""
    if len(points) < 2:
        return None
    (n1, t1), (n2, t2) = points[-2], points[-1]
    if t1 <= 0 or t2 <= 0:
        return None
    return math.log(t2 / t1) / math.log(n2 / n1)


def curves(sizes: dict[str, list[int]]) -> dict[str, list[tuple[int, float, float]]]:
    """Curve label -> [(size, ms, peak RSS MB)]."""
    found: dict[str, list[tuple[int, float, float]]] = {}
    for kind, label in (("fanout", "fan-out, submit to done"), ("chain", "chain, submit to done")):
        for n in sizes[kind]:
            p = local_point(kind, n)
            found.setdefault(label, []).append((n, p["seconds"] * 1000, p["peak_rss_mb"]))
    for n in sizes["dag"]:
        p = dag_point(n)
        found.setdefault("DAG accepted and stored", []).append(
            (n, p["seconds"] * 1000, p["peak_rss_mb"])
        )
    for n in sizes["store"]:
        p = store_point(n)
        for label in STORE_PATHS:
            found.setdefault(f"store: {label}", []).append(
                (n, p[label]["p50_ms"], p["peak_rss_mb"])
            )
    return found


def plot(found: dict[str, list[tuple[int, float, float]]], path: Path) -> str | None:
    """Draw time and peak RSS against size (log-log); returns why not when it cannot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is missing: pip install 'taskd[bench]' (or pip install matplotlib)"
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(13, 5.5))
    for label, pts in found.items():
        ns = [p[0] for p in pts]
        ax_t.plot(ns, [p[1] for p in pts], marker="o", label=label)
        if not label.startswith("store: ") or label.endswith("processes"):
            mem_label = "store: taskd serve" if label.startswith("store: ") else label
            ax_m.plot(ns, [p[2] for p in pts], marker="o", label=mem_label)
    lo, hi = 5, 2_000_000
    ax_t.plot([lo, hi], [0.1 * lo, 0.1 * hi], "k:", linewidth=1, label="linear (0.1 ms per item)")
    for ax, ylabel in ((ax_t, "time (ms)"), (ax_m, "peak RSS (MB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tasks (in the run, the DAG or the store)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    ax_t.set_title("time")
    ax_m.set_title("peak RSS of the process doing the work")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return None


def run(quick: bool) -> list[Row]:
    found = curves(QUICK if quick else FULL)
    rows: list[Row] = []
    for label, pts in found.items():
        for n, ms, rss in pts:
            rows.append(
                Row(
                    f"growth_{label}_{n}",
                    f"growth: {label}, {n:,} tasks (peak RSS {rss:.0f} MB)",
                    ms,
                    "ms",
                    None,
                    detail={"tasks": n, "peak_rss_mb": rss},
                )
            )
        rss_exp = exponent([(n, rss) for n, _, rss in pts])
        rows.append(
            Row(
                f"growth_{label}_exponent",
                f"growth: {label}, time exponent {pts[-2][0]:,} to {pts[-1][0]:,} (1 = linear)",
                exponent([(n, ms) for n, ms, _ in pts]),
                "",
                LINEAR,
                "<=",
                detail={"points": pts, "rss_exponent": rss_exp},
            )
        )
    why = plot(found, PLOT)
    print(f"   growth plot: {why or PLOT}", flush=True)
    return rows


if __name__ == "__main__":
    child(sys.argv[1], int(sys.argv[2]))
