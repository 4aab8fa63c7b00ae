"""The local runner: a job is a process (argv, or a script for /bin/sh) run under a supervisor.

Each attempt gets a shim (``supervise.py``) that is a child subreaper: every process the job
starts stays below it, double forks and ``setsid`` included. The attempt ends when the job's
main process ends; the shim then kills whatever is left, so no child keeps the output pipes
open, holds the slot or runs on. Kill and timeout reach every descendant the same way. The
result is the main process's exit code.

Jobs may run as another user than taskd (``Settings.local_user``): the shim stays with
taskd's user, the job gets the other user's identity, a private home and its pipes.

A job's processes do not survive taskd: at the next start ``adopt`` kills the shim of a lost
attempt and all below it (the shim is checked by pid *and* start time, so a reused pid is
never hit; processes are also found by the attempt in their environment, for when taskd died
before storing the pid) before the attempt is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from taskd.config import JobUser, Settings, job_user
from taskd.models import AttemptState, Outcome
from taskd.runners import supervise
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
SUPERVISOR = Path(supervise.__file__)
START_TIMEOUT = 30.0  # seconds for the shim to say the job started
DRAIN = 2.0  # seconds the output may still flow once the job's processes are gone
ESCALATE = 5.0  # seconds a shim has to act on a hard kill before taskd does it itself


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of a process (field 22 of /proc/PID/stat), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat.rsplit(")", 1)[-1].split()
    if len(fields) <= 19 or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def send_signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


@dataclass
class Job:
    """One running attempt, as its runner sees it: the shim and the pipes taskd reads."""

    shim: int
    main: int
    status: asyncio.StreamReader
    readers: dict[str, asyncio.StreamReader]
    transports: list[asyncio.BaseTransport] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def close(self) -> None:
        for transport in self.transports:
            transport.close()


class Supervisor:
    """The one supervisor process that forks a shim per attempt (see ``supervise``)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(SUPERVISOR), str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, env=self.env, start_new_session=True,
            )  # fmt: skip
        finally:
            theirs.close()
        ours.settimeout(10)  # a stuck supervisor fails starts instead of hanging taskd
        self.sock = ours

    def send(self, request: dict, fds: list[int]) -> None:
        """Hand one attempt to the supervisor; starts (or restarts) it when needed."""
        data = json.dumps(request).encode()
        frame = supervise.HEADER.pack(len(data)) + data
        for tries_left in (1, 0):
            if self.sock is None or (self.proc is not None and self.proc.poll() is not None):
                self.close_now()
                self._spawn()
            assert self.sock is not None
            try:
                rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array("i", fds))]
                sent = self.sock.sendmsg([frame], rights)
                if sent < len(frame):
                    self.sock.sendall(frame[sent:])
                return
            except OSError:
                self.close_now()
                if not tries_left:
                    raise

    def close_now(self) -> None:
        if self.sock is not None:
            self.sock.close()  # the supervisor ends at EOF; running shims carry on
            self.sock = None
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(2)
        self.proc = None


@register
class LocalRunner(Runner):
    """Runs jobs as local processes (Daggy argv jobs, Sundial shell scripts)."""

    name = "local"

    def __init__(self, settings: Settings, instance: str) -> None:
        super().__init__(settings, instance)
        # taskd's own configuration (its admin token among it) is not the job's business.
        # Read once: copying the environment on every spawn was a fifth of a spawn's cost.
        self._base_env = {k: v for k, v in os.environ.items() if not k.startswith("TASKD_")}
        self._jobs: dict[str, Job] = {}
        self._user: JobUser | None = job_user(settings.local_user)
        self._supervisor = Supervisor(self._base_env)

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
        request = {"argv": self.argv(ctx), "env": env, "cwd": ctx.job.workdir}
        if self._user is not None:
            request["user"] = self._user.as_request()
        loop = asyncio.get_running_loop()
        readers: dict[str, asyncio.StreamReader] = {}
        transports: list[asyncio.BaseTransport] = []
        ends = [os.pipe() for _ in range(3)]  # stdout, stderr, status
        try:
            for name, (r, _) in zip((*STREAMS, "status"), ends, strict=True):
                reader = asyncio.StreamReader(limit=READ_SIZE, loop=loop)
                transport, _ = await loop.connect_read_pipe(
                    lambda reader=reader: asyncio.StreamReaderProtocol(reader, loop=loop),
                    os.fdopen(r, "rb", buffering=0),  # the transport closes it
                )
                transports.append(transport)
                readers[name] = reader
            try:
                self._supervisor.send(request, [w for _, w in ends])
            except OSError as exc:
                raise StartFailed(f"cannot reach the local job supervisor: {exc}") from exc
        except BaseException:
            for transport in transports:
                transport.close()
            raise
        finally:
            for _, w in ends:
                os.close(w)
        status = readers.pop("status")
        try:
            line = await asyncio.wait_for(status.readline(), START_TIMEOUT)
        except TimeoutError:
            line = b"error the job's supervisor did not answer"
        word, _, rest = line.decode(errors="replace").strip().partition(" ")
        if word != "started":
            for transport in transports:
                transport.close()
            raise StartFailed(rest or "the job's supervisor ended unexpectedly")
        shim, main = (int(x) for x in rest.split())
        self._jobs[ctx.attempt_uuid] = Job(shim, main, status, readers, transports)
        return Started(pid=shim, pid_start=process_start_time(shim), host=self.settings.hostname)

    async def wait(
        self,
        ctx: AttemptContext,
        started: Started,
        sink: OutputSink,
        skip: Mapping[str, int] | None = None,
    ) -> Outcome:
        job = self._jobs.get(ctx.attempt_uuid)
        if job is None:
            return Outcome(AttemptState.LOST, reason="the process is not a child of this taskd")
        pumps = [
            asyncio.create_task(pump(s, job.readers[s], sink), name=f"pump-{s}") for s in STREAMS
        ]
        try:
            line = await job.status.readline()
            job.ended.set()
            word, _, rest = line.decode(errors="replace").strip().partition(" ")
            if word != "exit":
                # The shim itself died: its job's processes were re-parented away from it.
                await asyncio.to_thread(stop_attempt_processes, None, None, ctx.attempt_uuid)
            # Every process of the job is gone now; what it wrote is still in the pipes.
            await asyncio.wait(pumps, timeout=DRAIN)
        finally:
            job.ended.set()
            for task in pumps:
                task.cancel()
            job.close()
            self._jobs.pop(ctx.attempt_uuid, None)
        if word != "exit":
            reason = rest or "the job's supervisor ended unexpectedly"
            return Outcome(AttemptState.LOST, reason=reason)
        code = int(rest)
        if code < 0:
            name = signal.Signals(-code).name
            return Outcome(AttemptState.EXITED, exit_code=128 - code, reason=f"killed by {name}")
        return Outcome(AttemptState.EXITED, exit_code=code)

    async def kill(self, ctx: AttemptContext, started: Started, grace: float) -> None:
        job = self._jobs.get(ctx.attempt_uuid)
        if job is None or job.ended.is_set():
            return
        send_signal(job.shim, signal.SIGTERM)  # the shim passes it to every descendant
        if await ended_within(job, grace):
            return
        send_signal(job.shim, signal.SIGUSR1)  # the shim kills every descendant
        if await ended_within(job, ESCALATE):
            return
        await asyncio.to_thread(
            stop_attempt_processes, job.shim, started.pid_start, ctx.attempt_uuid
        )

    async def adopt(
        self,
        ctx: AttemptContext,
        started: Started,
        sink: OutputSink,
        skip: Mapping[str, int],
    ) -> Outcome:
        # Its pipes went with the taskd that started it; it cannot be watched, so it ends,
        # and everything it started ends before the attempt can be retried.
        found = await asyncio.to_thread(
            stop_attempt_processes, started.pid, started.pid_start, ctx.attempt_uuid
        )
        if not found:
            return Outcome(AttemptState.LOST, reason="the process ended while taskd was down")
        reason = "taskd restarted while the process ran; it was stopped"
        return Outcome(AttemptState.LOST, reason=reason)

    async def close(self) -> None:
        await asyncio.to_thread(self._supervisor.close_now)


async def ended_within(job: Job, seconds: float) -> bool:
    try:
        await asyncio.wait_for(job.ended.wait(), seconds)
    except TimeoutError:
        return False
    return True


def stop_attempt_processes(shim: int | None, shim_start: str | None, attempt_uuid: str) -> bool:
    """Kill a (lost) attempt's shim and every process of the job; True if any was alive.

    Blocking (it waits for the processes to go): run it in a thread. The descendants go
    first, while the shim is still there to adopt any orphan they leave; the shim, once its
    main process is dead, cleans up and exits by itself, or is killed.
    """
    if shim is not None and (shim_start is None or process_start_time(shim) != shim_start):
        shim = None  # ended, and the pid may belong to someone else by now
    found = shim is not None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pids = set(processes_of_attempt(attempt_uuid))
        if shim is not None:
            pids.update(supervise.descendants(shim))
        pids.discard(shim or 0)
        if not pids:
            break
        found = True
        supervise.signal_all(sorted(pids), signal.SIGKILL)
        time.sleep(0.02)
    if shim is not None:
        deadline = time.monotonic() + 2
        while process_start_time(shim) == shim_start and time.monotonic() < deadline:
            time.sleep(0.02)
        if process_start_time(shim) == shim_start:
            send_signal(shim, signal.SIGKILL)
    return found


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
