"""What every benchmark shares: result rows, a real ``taskd serve`` process, baselines, /proc.

Each figure is compared with a baseline measured in the same run (a raw SQLite commit, a raw
process spawn, a raw container lifecycle, a bare aiohttp app), because absolute times differ
from one machine to the next.
"""

from __future__ import annotations

import asyncio
import http.client
import math
import os
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-admin-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
# --quick fails only when a figure is this many times worse than its target.
QUICK_SLACK = 3.0


@dataclass
class Row:
    """One line of the table: a figure, its target and the baseline measured beside it."""

    name: str
    what: str
    figure: float | None
    unit: str
    target: float | None
    op: str = ">="  # the target is met when ``figure op target``
    baseline: float | None = None
    baseline_unit: str = ""
    baseline_what: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None  # why the row was not measured (no Docker engine, ...)
    error: str | None = None  # the benchmark itself failed
    bound: float | None = None  # --quick fails beyond this; default: QUICK_SLACK x the target

    @property
    def met(self) -> bool | None:
        if self.figure is None or self.target is None:
            return None
        return self.figure >= self.target if self.op == ">=" else self.figure <= self.target

    def __post_init__(self) -> None:
        if self.bound is None and self.target is not None:
            slack = QUICK_SLACK if self.op == "<=" else 1 / QUICK_SLACK
            self.bound = self.target * slack

    @property
    def regressed(self) -> bool:
        """Beyond its bound (--quick fails on it): a large regression, not noise."""
        if self.error:
            return True
        if self.figure is None or self.bound is None:
            return False
        return self.figure < self.bound if self.op == ">=" else self.figure > self.bound

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["met"] = self.met
        doc["regressed"] = self.regressed
        return doc


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready_once(port: int, timeout: float = 1.0) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/ready")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


class Daemon:
    """A real ``python -m taskd serve`` on its own database, stopped with SIGTERM."""

    def __init__(self, db: Path, *args: str, max_parallel: int = 16) -> None:
        self.db = db
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = ["--max-parallel", str(max_parallel), *args]
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = db.with_suffix(".log")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, within: float = 60.0) -> float:
        """Start it; return the seconds from spawn to the first 200 of ``GET /ready``."""
        # BENCH_SERVER: a script standing in for `python -m taskd` (a profiler, an experiment).
        server = os.environ.get("BENCH_SERVER")
        cmd = [sys.executable, *([server] if server else ["-m", "taskd"]), "serve"]
        cmd += ["--db", str(self.db), "--port", str(self.port), "--admin-token", TOKEN]
        cmd += ["--docker-network", "none", "--log-level", "warning", *self.args]
        # Like an installed taskd, keep compiled bytecode between starts.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("TASKD_") and k != "PYTHONDONTWRITEBYTECODE"
        }
        with open(self.log_path, "ab") as log:
            t0 = time.perf_counter()
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=ROOT, env=env)
        deadline = t0 + within
        while True:
            if ready_once(self.port):
                return time.perf_counter() - t0
            if self.proc.poll() is not None:
                raise RuntimeError(f"taskd exited with {self.proc.returncode}: {self.log()}")
            if time.perf_counter() > deadline:
                self.stop()
                raise RuntimeError(f"taskd did not serve within {within:g} s: {self.log()}")
            time.sleep(0.002)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- /proc ----------------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def context_switches(pid: int) -> int:
    """Context switches of every thread of a process: a busy-polling loop shows up here."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as fh:
                for line in fh:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            continue  # the thread ended meanwhile
    return total


def busy(seconds: float = 1.0) -> float:
    """The fraction of all cores busy over ``seconds`` (whoever uses them), from /proc/stat."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            ticks = [int(x) for x in fh.readline().split()[1:]]
        idle = ticks[3] + ticks[4]  # idle + iowait
        return sum(ticks) - idle, sum(ticks)

    used0, total0 = sample()
    time.sleep(seconds)
    used1, total1 = sample()
    return (used1 - used0) / max(1, total1 - total0)


def settle(limit: float = 0.25, within: float = 60.0) -> float:
    """Wait (at most ``within`` s) until the machine is quiet; returns the last busy fraction.

    A shared machine makes figures noisy; the full suite waits before each benchmark and
    records how busy the machine was, so a noisy figure can be told from a regression.
    """
    deadline = time.monotonic() + within
    while True:
        level = busy()
        if level <= limit or time.monotonic() > deadline:
            return level


# -- baselines ------------------------------------------------------------------------------


def raw_commits(workdir: Path, n: int) -> list[float]:
    """Latencies (s) of ``n`` raw SQLite commits, one row each, WAL + synchronous=FULL."""
    path = workdir / "raw-commit.db"
    db = sqlite3.connect(str(path), isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT, at INTEGER)")
        out = []
        for i in range(n):
            t0 = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t (v, at) VALUES (?, ?)", (f"row {i}", time.time_ns()))
            db.execute("COMMIT")
            out.append(time.perf_counter() - t0)
        return out
    finally:
        db.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


async def raw_spawns(n: int, concurrency: int, argv: tuple[str, ...] = ("/bin/true",)) -> float:
    """Processes/s: ``n`` raw spawns of ``argv`` at ``concurrency``, piped like taskd's."""
    todo = iter(range(n))

    async def worker() -> None:
        for _ in todo:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
            await proc.communicate()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - t0)


def bare_app(port: int) -> subprocess.Popen[bytes]:
    """A bare aiohttp app answering ``GET /ready`` like taskd does (the HTTP baseline)."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("bare_app.py")), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not ready_once(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the bare aiohttp app did not start")
        time.sleep(0.01)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def docker_ready(image: str = "taskd-test:latest") -> str | None:
    """None when a Docker engine answers and has the test image (built if absent), else why not."""
    from tests.dockerutil import TEST_IMAGE, docker_available, ensure_test_image

    assert image == TEST_IMAGE, image
    if not docker_available():
        return "the Docker engine does not answer"
    try:
        ensure_test_image()
    except RuntimeError as exc:
        return str(exc)
    return None
