"""The domain: states, their named groups, value objects and the pure transition rules.

No I/O here. Every state change in taskd is decided by a function of this module and then
written by the store together with its state-change row.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from taskd.errors import Conflict


def now_ns() -> int:
    return time.time_ns()


class RunKind(StrEnum):
    PROCESS = "process"  # a run of a stored definition (Sundial)
    DAG = "dag"  # an ad-hoc DAG (Daggy)
    TASK = "task"  # a one-off container task (Drove)


class Trigger(StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"
    API = "api"
    RETRY = "retry"


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    KILLED = "killed"


RUN_ACTIVE = frozenset({RunState.QUEUED, RunState.RUNNING})
RUN_TERMINAL = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.KILLED})


class TaskState(StrEnum):
    WAITING = "waiting"  # parents not done
    READY = "ready"  # waiting for capacity
    RUNNING = "running"
    RETRY_WAIT = "retry_wait"  # backing off before the next attempt
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    KILLED = "killed"
    UPSTREAM_FAILED = "upstream_failed"  # a required parent failed; never runs


TASK_TERMINAL = frozenset(
    {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.KILLED, TaskState.UPSTREAM_FAILED}
)
TASK_UNSUCCESSFUL = TASK_TERMINAL - {TaskState.SUCCEEDED}
TASK_PENDING = frozenset({TaskState.WAITING, TaskState.READY, TaskState.RETRY_WAIT})

TASK_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.WAITING: frozenset({TaskState.READY, TaskState.KILLED, TaskState.UPSTREAM_FAILED}),
    TaskState.READY: frozenset({TaskState.RUNNING, TaskState.KILLED, TaskState.UPSTREAM_FAILED}),
    TaskState.RUNNING: frozenset(
        {TaskState.SUCCEEDED, TaskState.RETRY_WAIT, TaskState.FAILED, TaskState.KILLED}
    ),
    TaskState.RETRY_WAIT: frozenset({TaskState.READY, TaskState.KILLED}),
    # A retry (Sundial) or a resume (Daggy) brings unsuccessful tasks back.
    TaskState.FAILED: frozenset({TaskState.READY, TaskState.WAITING}),
    TaskState.KILLED: frozenset({TaskState.READY, TaskState.WAITING}),
    TaskState.UPSTREAM_FAILED: frozenset({TaskState.READY, TaskState.WAITING}),
    TaskState.SUCCEEDED: frozenset(),
}


class AttemptState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    EXITED = "exited"  # with an exit code; success depends on it (and reports)
    TIMED_OUT = "timed_out"
    KILLED = "killed"
    LOST = "lost"  # taskd lost track of it (crash, container vanished)
    START_FAILED = "start_failed"


ATTEMPT_ACTIVE = frozenset({AttemptState.STARTING, AttemptState.RUNNING})


def check_transition(current: TaskState, new: TaskState) -> None:
    if new not in TASK_TRANSITIONS[current]:
        raise Conflict(f"a task cannot go from {current} to {new}")


@dataclass(frozen=True, slots=True)
class Volume:
    host_path: str
    container_path: str
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What a runner needs to start one attempt. Resolved at submission; never changes."""

    runner: str  # "docker" | "local" | "swarm"
    command: tuple[str, ...] = ()  # argv (docker: the container's Cmd)
    image: str | None = None  # docker only, "name:tag"
    script: str | None = None  # local only: run with /bin/sh -c
    env: tuple[tuple[str, str], ...] = ()
    cpus: float = 0.0  # 0 = not accounted
    memory_mb: int = 0  # 0 = not accounted, no limit
    pin_cores: bool = False  # docker: give whole cores with a cpuset (Drove)
    volumes: tuple[Volume, ...] = ()
    pull_timeout: float = 300.0
    workdir: str | None = None
    # swarm: placement constraints ("node.labels.gpu==1") and spread preferences (label names)
    constraints: tuple[str, ...] = ()
    preferences: tuple[str, ...] = ()

    def to_doc(self) -> dict[str, Any]:
        # By hand: dataclasses.asdict deep-copies and costs ~10x more on 10,000-task DAGs.
        return {
            "runner": self.runner,
            "command": list(self.command),
            "image": self.image,
            "script": self.script,
            "env": [list(pair) for pair in self.env],
            "cpus": self.cpus,
            "memory_mb": self.memory_mb,
            "pin_cores": self.pin_cores,
            "volumes": [
                {
                    "host_path": v.host_path,
                    "container_path": v.container_path,
                    "read_only": v.read_only,
                }
                for v in self.volumes
            ],
            "pull_timeout": self.pull_timeout,
            "workdir": self.workdir,
            "constraints": list(self.constraints),
            "preferences": list(self.preferences),
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> JobSpec:
        doc = dict(doc)
        doc["command"] = tuple(doc.get("command") or ())
        doc["env"] = tuple(tuple(pair) for pair in doc.get("env") or ())
        doc["volumes"] = tuple(Volume(**v) for v in doc.get("volumes") or ())
        doc["constraints"] = tuple(doc.get("constraints") or ())
        doc["preferences"] = tuple(doc.get("preferences") or ())
        return cls(**doc)


CONTAINER_RUNNERS = ("docker", "swarm")
# What runs a container job that names no runner; the server sets it from --container-runner.
_container_runner = ["docker"]


def default_container_runner() -> str:
    return _container_runner[0]


def set_default_container_runner(name: str) -> None:
    if name not in CONTAINER_RUNNERS:
        raise ValueError(f"no container runner named {name!r}")
    _container_runner[0] = name


MAX_BACKOFF = 366 * 86400.0  # seconds


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_attempts`` counts every attempt, the first included (Sundial)."""

    max_attempts: int = 1
    backoff_base: float = 0.0
    backoff_exponent: float = 1.0

    def delay(self, attempts_so_far: int) -> float:
        """Seconds to wait before the next attempt (Sundial: base * exponent ** attempts).

        Capped at ``MAX_BACKOFF``: a large exponent must not overflow (or outlive the clock).
        """
        if self.backoff_base <= 0:
            return 0.0
        try:
            return min(MAX_BACKOFF, self.backoff_base * self.backoff_exponent**attempts_so_far)
        except OverflowError:
            return MAX_BACKOFF


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt ended, as the runner saw it."""

    state: AttemptState
    exit_code: int | None = None
    reason: str | None = None
    oom: bool = False
    # Ended by something that is not the job's doing (an engine outage, a container lost in a
    # taskd crash): the attempt does not use up the task's retry budget.
    blameless: bool = False


@dataclass(slots=True)
class TaskTemplate:
    """One task of a DAG to be created: the input of a submission."""

    name: str
    job: JobSpec
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_runtime: float | None = None
    explicit_success: bool = False
    generator: bool = False
    template: str | None = None  # the name before parameter expansion
    parents: list[tuple[str, bool]] = field(default_factory=list)  # (name, required)
    extra: dict[str, Any] = field(default_factory=dict)


def attempt_succeeded(outcome: Outcome, explicit_success: bool, reported: str | None) -> bool:
    """The result class of a finished attempt (SPEC §1.2, ``require_explicit_success``).

    A failure reported by the task always fails it; with ``explicit_success`` an exit 0
    succeeds only when the task reported success.
    """
    if outcome.state is not AttemptState.EXITED or outcome.exit_code != 0:
        return False
    if reported == "failed":
        return False
    return reported == "succeeded" if explicit_success else True


def after_attempt(
    succeeded: bool,
    outcome: Outcome,
    attempts: int,
    retry: RetryPolicy,
    now: int,
) -> tuple[TaskState, int | None]:
    """The task's next state after an attempt ended, and when it may run again (ns)."""
    if succeeded:
        return TaskState.SUCCEEDED, None
    if outcome.state is AttemptState.KILLED:
        return TaskState.KILLED, None
    if attempts < retry.max_attempts:
        return TaskState.RETRY_WAIT, now + int(retry.delay(attempts) * 1e9)
    return TaskState.FAILED, None


def readiness(parents: Iterable[tuple[TaskState, bool]]) -> TaskState | None:
    """Whether a waiting task can run, given its parents' (state, required) pairs.

    READY when every required parent succeeded and every optional one finished;
    UPSTREAM_FAILED as soon as a required parent ended without success; else None.
    """
    blocked = False
    for state, required in parents:
        if required:
            if state in TASK_UNSUCCESSFUL:
                return TaskState.UPSTREAM_FAILED
            if state is not TaskState.SUCCEEDED:
                blocked = True
        elif state not in TASK_TERMINAL:
            blocked = True
    return None if blocked else TaskState.READY


def run_result(states: Iterable[TaskState], kill_requested: bool) -> RunState | None:
    """The run's final state once no task can make progress, else None."""
    final = RunState.SUCCEEDED
    for state in states:
        if state not in TASK_TERMINAL:
            return None
        if state is not TaskState.SUCCEEDED:
            final = RunState.FAILED
    if kill_requested and final is not RunState.SUCCEEDED:
        return RunState.KILLED
    return final
