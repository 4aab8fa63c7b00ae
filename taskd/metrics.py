"""Prometheus metrics: counters and histograms kept by the engine, gauges read at scrape time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from taskd.models import now_ns

if TYPE_CHECKING:
    from taskd.engine.graph import LiveAttempt, RunNode

DURATION_BUCKETS = (0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, float("inf"))


class Metrics:
    """One registry per engine, so several servers in one process (tests) do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.attempt_seconds = Histogram(
            "taskd_attempt_duration_seconds", "How long attempts ran, by runner and end state.",
            ["runner", "state"], buckets=DURATION_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.runs_finished = Counter(
            "taskd_runs_finished", "Runs that ended, by kind and final state.",
            ["kind", "state"], registry=self.registry,
        )  # fmt: skip
        self.runner_errors = Counter(
            "taskd_runner_errors", "Runner operations that failed (start, wait, cleanup).",
            ["runner"], registry=self.registry,
        )  # fmt: skip
        self.scheduler_lag = Histogram(
            "taskd_scheduler_lag_seconds", "Delay between a slot's time and its run's start.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, float("inf")),
            registry=self.registry,
        )  # fmt: skip
        self.queue_depth = 0
        # Set by the engine: runners (whose backend may be unreachable) and the tasks held
        # meanwhile, per runner.
        self.runners: dict[str, Any] = {}
        self.held: dict[str, list[Any]] = {}

    def attempt_finished(self, runner: str, state: str, att: LiveAttempt, now: int) -> None:
        seconds = max(0.0, (now - att.created_ns) / 1e9)
        self.attempt_seconds.labels(runner, str(state)).observe(seconds)

    def run_finished(self, run: RunNode) -> None:
        self.runs_finished.labels(run.kind, str(run.state)).inc()

    def render(self, counts: dict[str, Any]) -> bytes:
        """The exposition text: the registry plus gauges computed from the store now."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Snapshot(counts, self.queue_depth))
        registry.register(_Backends(self.runners, self.held))
        return generate_latest(self.registry) + generate_latest(registry)


class _Backends:
    """Whether each runner's backend answers, and how many ready tasks wait for it."""

    def __init__(self, runners: dict[str, Any], held: dict[str, list[Any]]) -> None:
        self.runners = runners
        self.held = held

    def collect(self):
        docker = self.runners.get("docker")
        if docker is not None and hasattr(docker, "available"):
            yield GaugeMetricFamily(
                "taskd_docker_engine_up", "1 while the Docker engine answers, 0 during an outage.",
                value=1 if docker.available else 0,
            )  # fmt: skip
        held = GaugeMetricFamily(
            "taskd_tasks_held", "Ready tasks held because their runner's backend is unreachable.",
            labels=["runner"],
        )  # fmt: skip
        for name in sorted(self.runners):
            waiting = [t for t in self.held.get(name, ()) if str(t.state) == "ready"]
            held.add_metric([name], len(waiting))
        yield held


class _Snapshot:
    def __init__(self, counts: dict[str, Any], queue_depth: int) -> None:
        self.counts = counts
        self.queue_depth = queue_depth

    def collect(self):
        runs = GaugeMetricFamily("taskd_runs", "Runs by kind and state.", labels=["kind", "state"])
        for (kind, state), n in sorted(self.counts["runs"].items()):
            runs.add_metric([kind, state], n)
        yield runs
        tasks = GaugeMetricFamily(
            "taskd_tasks", "Tasks not finished yet, by state.", labels=["state"]
        )
        for state, n in sorted(self.counts["tasks"].items()):
            tasks.add_metric([state], n)
        yield tasks
        yield GaugeMetricFamily(
            "taskd_queue_depth", "Tasks ready and waiting for capacity.", value=self.queue_depth
        )
        yield GaugeMetricFamily(
            "taskd_scrape_timestamp_seconds", "When these figures were read.", value=now_ns() / 1e9
        )
