"""The local runner: a job is a process (argv, or a script for /bin/sh) in its own process group.

Kill signals the whole group, and when the main process exits whatever it left behind in its
group is killed too, so a job never leaves stray processes holding its pipes open. A job's
processes do not survive taskd: at the next start ``adopt`` kills a group that is somehow still
there (checked by pid *and* start time, so a reused pid is never hit; found by the attempt in
its environment when taskd died before storing the pid) and reports it lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping

from taskd.config import Settings
from taskd.models import AttemptState, Outcome
from taskd.runners.base import (
    STREAMS,
    AttemptContext,
    OutputSink,
    Runner,
    Started,
    StartFailed,
    register,
)

READ_SIZE = 64 * 1024


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of a process (field 22 of /proc/PID/stat), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def kill_group(pid: int, sig: signal.Signals) -> bool:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


@register
class LocalRunner(Runner):
    """Runs jobs as local processes (Daggy argv jobs, Sundial shell scripts)."""

    name = "local"

    def __init__(self, settings: Settings, instance: str) -> None:
        super().__init__(settings, instance)
        # taskd's own configuration (its admin token among it) is not the job's business.
        # Read once: copying the environment on every spawn was a fifth of a spawn's cost.
        self._base_env = {k: v for k, v in os.environ.items() if not k.startswith("TASKD_")}
        self._procs: dict[str, asyncio.subprocess.Process] = {}

    def argv(self, ctx: AttemptContext) -> list[str]:
        job = ctx.job
        if job.script is not None:
            return ["/bin/sh", "-c", job.script]
        if not job.command:
            raise StartFailed("the job has no command")
        return list(job.command)

    async def start(self, ctx: AttemptContext) -> Started:
        env = dict(self._base_env)
        env.update(ctx.env)
        env.update(dict(ctx.job.env))
        argv = self.argv(ctx)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=ctx.job.workdir,
                start_new_session=True,  # its own process group, so kill reaches every child
            )
        except (OSError, ValueError) as exc:
            raise StartFailed(f"cannot start {argv[0]!r}: {exc}") from exc
        self._procs[ctx.attempt_uuid] = proc
        return Started(
            pid=proc.pid, pid_start=process_start_time(proc.pid), host=self.settings.hostname
        )

    async def wait(
        self,
        ctx: AttemptContext,
        started: Started,
        sink: OutputSink,
        skip: Mapping[str, int] | None = None,
    ) -> Outcome:
        proc = self._procs.get(ctx.attempt_uuid)
        if proc is None:
            return Outcome(AttemptState.LOST, reason="the process is not a child of this taskd")
        pumps = [
            asyncio.create_task(pump(stream, getattr(proc, stream), sink), name=f"pump-{stream}")
            for stream in STREAMS
        ]
        try:
            code = await proc.wait()
            # Whatever the job left running in its group would keep the pipes open.
            kill_group(proc.pid, signal.SIGKILL)
            await asyncio.gather(*pumps)
        finally:
            for task in pumps:
                task.cancel()
            self._procs.pop(ctx.attempt_uuid, None)
        if code < 0:
            name = signal.Signals(-code).name
            return Outcome(AttemptState.EXITED, exit_code=128 - code, reason=f"killed by {name}")
        return Outcome(AttemptState.EXITED, exit_code=code)

    async def kill(self, ctx: AttemptContext, started: Started, grace: float) -> None:
        proc = self._procs.get(ctx.attempt_uuid)
        if proc is None or started.pid is None:
            return
        kill_group(started.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), timeout=grace)
        except TimeoutError:
            kill_group(started.pid, signal.SIGKILL)

    async def adopt(
        self,
        ctx: AttemptContext,
        started: Started,
        sink: OutputSink,
        skip: Mapping[str, int],
    ) -> Outcome:
        pid = started.pid
        if pid and started.pid_start and process_start_time(pid) == started.pid_start:
            pids = [pid]
        elif pid is None:
            # taskd died after starting it but before storing its pid: find it by the attempt
            # its environment names, or it would run on beside the retry.
            pids = processes_of_attempt(ctx.attempt_uuid)
        else:
            pids = []
        if not pids:
            return Outcome(AttemptState.LOST, reason="the process ended while taskd was down")
        # Its pipes went with the taskd that started it; it cannot be watched, so it ends.
        for found in pids:
            kill_group(found, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(found, signal.SIGKILL)
        reason = "taskd restarted while the process ran; it was stopped"
        return Outcome(AttemptState.LOST, reason=reason)


def processes_of_attempt(attempt_uuid: str) -> list[int]:
    """Live processes whose environment has TASKD_TASK_ID=<attempt> (a job and its children)."""
    needle = f"\0TASKD_TASK_ID={attempt_uuid}\0".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                environ = b"\0" + fh.read() + b"\0"
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if needle in environ:
            found.append(int(entry))
    return found


async def pump(stream: str, reader: asyncio.StreamReader | None, sink: OutputSink) -> None:
    if reader is None:
        return
    while chunk := await reader.read(READ_SIZE):
        sink.write(stream, chunk)
