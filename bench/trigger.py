"""Trigger to done over HTTP: ``/bin/true`` DAG runs against a real ``taskd serve``.

The clock starts when the client sends ``POST /v1/dagrun`` (the request that creates the run)
and stops when the client sees the run finished. taskd has no wait endpoint for the DAG API,
so the client polls ``GET /v1/dagrun/{id}/state`` every ``POLL`` seconds on one keep-alive
connection (a poll costs the server one small read): the figure is late by at most one
interval, half of one on average. Three shapes, each with a raw baseline measured in the same
run (``asyncio.create_subprocess_exec('/bin/true')`` piped like taskd's, at the daemon's
slot count):

- 100 independent tasks: the time against 100 raw spawns at the same parallelism;
- a chain of 20: time per hop above one raw sequential spawn;
- 1,000 independent tasks: tasks/s against the raw spawn rate at the same parallelism.
"""

from __future__ import annotations

import asyncio
import http.client
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.common import HEADERS, Daemon, Row, raw_spawns

SLOTS = 16
POLL = 0.005  # seconds between two looks at the run's state
TRUE = {"command": ["/bin/true"]}


def independent(n: int) -> dict[str, Any]:
    return {"tag": f"bench-{n}", "tasks": {f"t{i}": {"job": TRUE} for i in range(n)}}


def chain(n: int) -> dict[str, Any]:
    tasks = {f"t{i}": {"job": TRUE, **({"parents": [f"t{i - 1}"]} if i else {})} for i in range(n)}
    return {"tag": f"bench-chain-{n}", "tasks": tasks}


class Client:
    """One keep-alive HTTP connection to the daemon, as a script driving taskd would hold."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method: str, path: str, body: bytes | None = None) -> Any:
        headers = dict(HEADERS)
        if body is not None:
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=body, headers=headers)
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status} {data[:300]!r}")
        return orjson.loads(data) if data else None

    def close(self) -> None:
        self.conn.close()


def trigger_to_done(client: Client, spec: dict[str, Any]) -> dict[str, float]:
    """Seconds from sending the run to seeing it finished, and how many polls that took."""
    body = orjson.dumps(spec)
    t0 = time.perf_counter()
    run_id = client.call("POST", "/v1/dagrun", body)["runID"]
    accepted = time.perf_counter() - t0
    polls = 0
    while True:
        time.sleep(POLL)
        polls += 1
        state = client.call("GET", f"/v1/dagrun/{run_id}/state")["state"]
        if state not in ("QUEUED", "RUNNING"):
            break
    seconds = time.perf_counter() - t0
    if state != "COMPLETED":
        raise RuntimeError(f"run {run_id} ended {state}")
    return {"seconds": seconds, "accepted": accepted, "polls": polls}


def raw_sequential(n: int) -> float:
    """Seconds per raw spawn, one after the other (the floor of one hop of a chain)."""
    return 1 / asyncio.run(raw_spawns(n, 1))


def median_of(runs: list[dict[str, float]], key: str = "seconds") -> float:
    return statistics.median(r[key] for r in runs)


def run(quick: bool) -> list[Row]:
    repeat = 3 if quick else 7
    big = 1000
    with tempfile.TemporaryDirectory(prefix="taskd-bench-") as tmp:
        daemon = Daemon(Path(tmp) / "trigger.db", max_parallel=SLOTS)
        daemon.start()
        client = Client(daemon.port)
        try:
            trigger_to_done(client, independent(10))  # warm: first spawn, imports, caches
            few, hops, raw_few, raw_hop = [], [], [], []
            # Interleaved, so load from others on the machine hits both sides alike.
            for _ in range(repeat):
                raw_few.append(100 / asyncio.run(raw_spawns(100, SLOTS)))
                few.append(trigger_to_done(client, independent(100)))
                raw_hop.append(raw_sequential(20))
                hops.append(trigger_to_done(client, chain(20)))
            raw_rate = asyncio.run(raw_spawns(big, SLOTS))
            many = trigger_to_done(client, independent(big))
            raw_rate = (raw_rate + asyncio.run(raw_spawns(big, SLOTS))) / 2
        finally:
            client.close()
            daemon.stop()
    few_s, raw_few_s = median_of(few), statistics.median(raw_few)
    hop_ms = median_of(hops) / 20 * 1e3
    raw_hop_ms = statistics.median(raw_hop) * 1e3
    rate = big / many["seconds"]
    method = {"poll_interval_ms": POLL * 1e3, "slots": SLOTS, "repeats": repeat}
    return [
        Row(
            "trigger_100",
            "trigger → done over HTTP, 100 independent /bin/true tasks",
            few_s / raw_few_s,
            "times raw",
            1.5,
            "<=",
            baseline=raw_few_s * 1e3,
            baseline_unit="ms",
            baseline_what=f"100 raw spawns at concurrency {SLOTS}",
            bound=8,  # a shared machine's figures vary several times over
            detail={
                **method,
                "taskd_ms": few_s * 1e3,
                "accepted_ms": median_of(few, "accepted") * 1e3,
                "polls": median_of(few, "polls"),
                "all_taskd_ms": [round(r["seconds"] * 1e3, 1) for r in few],
                "all_raw_ms": [round(s * 1e3, 1) for s in raw_few],
            },
        ),
        Row(
            "trigger_chain",
            "trigger → done over HTTP, chain of 20 /bin/true tasks: ms a hop above a raw spawn",
            hop_ms - raw_hop_ms,
            "ms",
            1.5,
            "<=",
            baseline=raw_hop_ms,
            baseline_unit="ms",
            baseline_what="one raw sequential spawn",
            bound=40,
            detail={
                **method,
                "per_hop_ms": hop_ms,
                "run_ms": median_of(hops) * 1e3,
                "accepted_ms": median_of(hops, "accepted") * 1e3,
                "all_run_ms": [round(r["seconds"] * 1e3, 1) for r in hops],
            },
        ),
        Row(
            "trigger_1000",
            "trigger → done over HTTP, 1,000 independent /bin/true tasks",
            100 * rate / raw_rate,
            "% of raw",
            75,
            ">=",
            baseline=raw_rate,
            baseline_unit="spawns/s",
            baseline_what=f"raw spawn rate at concurrency {SLOTS}",
            bound=10,
            detail={
                **method,
                "tasks_per_s": rate,
                "run_ms": many["seconds"] * 1e3,
                "accepted_ms": many["accepted"] * 1e3,
            },
        ),
    ]


if __name__ == "__main__":
    import json
    import sys

    for row in run("--quick" in sys.argv):
        print(json.dumps(row.to_json(), ensure_ascii=False))
