"""Swarm tasks: N busybox ``true`` jobs as Swarm services through taskd vs the raw service API.

Both at the same concurrency on the same swarm, in the same run. Raw: per job, create a
``replicated-job`` service (what ``docker service create --mode replicated-job`` sends), list
its task every 0.1 s until it ended, remove the service. taskd: one run of N swarm tasks
in-process, so each also has its output read and stored, its state changes committed and its
service removed. Per task, dispatch to service removed (taskd: the attempt's creation to the
end of the runner's cleanup, noted by a wrapper in the benchmark) against create to removed
(raw); "added" is the difference of the medians, also given as a share of the raw lifecycle.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import tempfile
import time
from pathlib import Path

import aiodocker

from bench.common import Row, docker_ready, pct
from bench.docker_tasks import through_taskd
from tests.dockerutil import remove_labelled

IMAGE = "taskd-test:latest"
CONCURRENCY = 4
RAW_LABEL = "taskd-bench"
ENDED = {"complete", "failed", "shutdown", "rejected", "orphaned", "remove"}


def swarm_manager() -> bool:
    out = subprocess.run(["docker", "info", "--format", "{{.Swarm.ControlAvailable}}"],
                         capture_output=True, text=True, timeout=20, check=False)  # fmt: skip
    return out.stdout.strip() == "true"


def remove_services(label: str) -> None:
    out = subprocess.run(["docker", "service", "ls", "-q", "--filter", f"label={label}"],
                         capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    if ids := out.stdout.split():
        subprocess.run(["docker", "service", "rm", *ids], capture_output=True, timeout=60,
                       check=False)  # fmt: skip


async def raw(n: int, concurrency: int, mark: str) -> tuple[float, list[float]]:
    """Jobs/s and per-job seconds of service create, task ended, service removed."""
    todo = iter(range(n))
    spans: list[float] = []
    spec = {
        "Labels": {RAW_LABEL: mark},
        "TaskTemplate": {
            "ContainerSpec": {"Image": IMAGE, "Args": ["true"], "Labels": {RAW_LABEL: mark}},
            "RestartPolicy": {"Condition": "none"},
        },
        "Mode": {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}},
    }
    async with aiodocker.Docker() as docker:

        async def worker() -> None:
            for _ in todo:
                t0 = time.perf_counter()
                made = await docker._query_json("services/create", "POST", data=json.dumps(spec))
                try:
                    filters = json.dumps({"service": [made["ID"]]})
                    while True:
                        tasks = await docker._query_json("tasks", params={"filters": filters})
                        if tasks and tasks[0]["Status"]["State"] in ENDED:
                            break
                        await asyncio.sleep(0.1)
                finally:
                    await docker._query_json(f"services/{made['ID']}", "DELETE")
                spans.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return n / (time.perf_counter() - t0), spans


def run(quick: bool) -> list[Row]:
    n = 12 if quick else 60
    why = docker_ready(IMAGE) or (None if swarm_manager() else "the engine is not a swarm manager")
    what = f"swarm tasks, {n} services at concurrency {CONCURRENCY}"
    if why:
        return [
            Row("swarm_throughput", f"{what}, of raw throughput", None, "%", 70, skipped=why),
            Row(
                "swarm_added",
                f"{what}, added per task p50, of the raw lifecycle",
                None,
                "%",
                50,
                "<=",
                skipped=why,
            ),
        ]
    mark = secrets.token_hex(4)  # this run's raw services, and no one else's
    try:
        asyncio.run(raw(CONCURRENCY, CONCURRENCY, mark))  # warm the swarm up
        base_rate, base_spans = asyncio.run(raw(n, CONCURRENCY, mark))
    finally:
        remove_services(f"{RAW_LABEL}={mark}")
        # Finished replicated-job tasks leave their containers behind (20.10): not ours to keep.
        remove_labelled(f"{RAW_LABEL}={mark}")
    with tempfile.TemporaryDirectory(prefix="taskd-bench-") as tmp:
        rate, spans = asyncio.run(
            through_taskd(Path(tmp) / "swarm.db", n, CONCURRENCY, "swarm", 10, remove_services)
        )
    raw_p50 = pct(base_spans, 50)
    added = pct(spans, 50) - raw_p50
    detail = {
        "services": n,
        "concurrency": CONCURRENCY,
        "taskd_per_s": rate,
        "raw_per_s": base_rate,
        "taskd_p50_ms": pct(spans, 50) * 1000,
        "raw_p50_ms": raw_p50 * 1000,
        "taskd_p99_ms": pct(spans, 99) * 1000,
        "raw_p99_ms": pct(base_spans, 99) * 1000,
        "added_p50_ms": added * 1000,
    }
    return [
        Row(
            "swarm_throughput",
            f"{what}, of raw throughput",
            100 * rate / base_rate,
            "%",
            70,
            baseline=base_rate,
            baseline_unit="services/s",
            baseline_what="raw replicated-job service create/ended/remove",
            detail=detail,
        ),
        Row(
            "swarm_added",
            f"{what}, added per task p50, of the raw lifecycle",
            100 * added / raw_p50,
            "%",
            50,
            "<=",
            baseline=raw_p50 * 1000,
            baseline_unit="ms",
            baseline_what="raw replicated-job service lifecycle p50",
            detail=detail,
            # Two medians of a few seconds each on a swarm shared with other work: noisy.
            bound=200,
        ),
    ]
