"""The small interface every runner backend implements, and the registry of backends.

The engine owns the life of an attempt; a runner only knows how to start a job, watch it to
its end while streaming its output, stop it, and clean up after it:

    started = await runner.start(ctx)            # raises StartFailed
    outcome = await runner.wait(ctx, started, sink)   # returns when the job has ended
    await runner.kill(ctx, started, grace)       # makes a pending wait() return soon
    await runner.cleanup(ctx, started)           # after output and outcome are stored

After a crash the engine calls ``adopt`` for every attempt the store still has as running;
``sweep`` removes whatever the backend holds for taskd that the store does not know.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from taskd.config import Settings
from taskd.models import JobSpec, Outcome

STREAMS = ("stdout", "stderr")


class OutputSink(Protocol):
    """Where a runner puts what the job prints. ``write`` never blocks."""

    def write(self, stream: str, data: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class AttemptContext:
    """Everything a runner needs to know about one attempt."""

    attempt_uuid: str
    run_id: int
    task_id: int
    task_name: str
    number: int
    job: JobSpec
    env: Mapping[str, str]  # the TASKD_* (and family) variables; job.env is merged on top
    labels: Mapping[str, str] = field(default_factory=dict)
    name: str = ""  # a readable, unique name for the container
    cpuset: tuple[int, ...] = ()  # whole cores given to this attempt (pin_cores jobs)


@dataclass(frozen=True, slots=True)
class Started:
    """What identifies a started job; stored on the attempt for recovery."""

    container_id: str | None = None
    pid: int | None = None
    pid_start: str | None = None  # the process start time, to tell a reused pid apart
    host: str | None = None


class StartFailed(Exception):
    """The job could not be started (image missing, pull timed out, bad command...)."""

    blameless = False  # True: not the job's fault; the attempt does not use up its budget


class EngineUnavailable(StartFailed):
    """The backend (the Docker engine) could not be reached: the attempt is not to blame."""

    blameless = True


class Runner(abc.ABC):
    """One backend (docker, local)."""

    name: str

    def __init__(self, settings: Settings, instance: str) -> None:
        self.settings = settings
        self.instance = instance  # labels (and so scopes) everything this taskd starts

    @abc.abstractmethod
    async def start(self, ctx: AttemptContext) -> Started: ...

    @abc.abstractmethod
    async def wait(
        self,
        ctx: AttemptContext,
        started: Started,
        sink: OutputSink,
        skip: Mapping[str, int] | None = None,
    ) -> Outcome:
        """Stream the job's output into ``sink`` until it ends; return how it ended.

        ``skip`` gives, per stream, how many bytes the store already holds (re-adoption after
        a restart), so nothing is stored twice.
        """

    @abc.abstractmethod
    async def kill(self, ctx: AttemptContext, started: Started, grace: float) -> None:
        """Stop the job: a stop signal, ``grace`` seconds, then a hard kill."""

    async def cleanup(self, ctx: AttemptContext, started: Started) -> None:  # noqa: B027
        """Release what the job left behind once its outcome is stored."""

    @abc.abstractmethod
    async def adopt(
        self,
        ctx: AttemptContext,
        started: Started,
        sink: OutputSink,
        skip: Mapping[str, int],
    ) -> Outcome:
        """Take over an attempt that was running when taskd stopped; return how it ended."""

    async def sweep(self, instance: str, known: set[str]) -> list[str]:
        """Remove jobs labelled with ``instance`` whose attempt uuid is not in ``known``."""
        return []

    async def close(self) -> None:  # noqa: B027
        """Release connections at shutdown (jobs keep running)."""


RUNNERS: dict[str, type[Runner]] = {}


def register(cls: type[Runner]) -> type[Runner]:
    RUNNERS[cls.name] = cls
    return cls
