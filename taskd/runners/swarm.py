"""The Swarm backend: every attempt is one Docker Swarm service that runs its job once.

The service runs one replica once (restart condition ``none``) wherever Swarm places it. It is
a ``replicated`` service of one replica rather than a ``replicated-job``: on the engines taskd
was tried with (20.10), removing a replicated-job service neither stops its running task nor
removes its task's container, and finished job tasks leave their containers behind for good
(moby issue 42789), which would break both kill and "nothing left behind". A one-replica
service that never restarts runs the job exactly as a job would, and its removal does stop and
remove its container. It carries the same
labels as a docker container (``taskd.instance``, ``taskd.attempt``...), so a restarted taskd
finds its services again (``adopt``) and removes the ones it does not know (``sweep``).
Every service is removed once its output and exit code are stored, or when taskd kills it
(Swarm has no time limit of its own).

Swarm reports no task changes on its event stream, so one shared loop lists the tasks of
the services being watched, and only while any is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiodocker
import aiohttp

from taskd.config import Settings
from taskd.log import get_logger
from taskd.models import AttemptState, Outcome
from taskd.runners import callbackurl
from taskd.runners.base import (
    STREAMS,
    AttemptContext,
    EngineUnavailable,
    OutputSink,
    Runner,
    Started,
    StartFailed,
    register,
)
from taskd.runners.containerspec import job_env, job_labels
from taskd.runners.dockerengine import EngineHealth, unreachable
from taskd.runners.swarmnodes import NodeWatch, SwarmCapacity
from taskd.runners.swarmtasks import TaskLog, TaskWatch

log = get_logger("taskd.swarm")

_API_ERRORS = (aiodocker.DockerError, aiohttp.ClientError, OSError, asyncio.TimeoutError)
_CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=120, sock_connect=10)
_LONG_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10)
_PING_TIMEOUT = aiohttp.ClientTimeout(total=10, sock_connect=5)
# When a job gives no pull timeout: how long its task may wait for a node and its image.
DEFAULT_SCHEDULE_TIMEOUT = 300.0
# A stopped task reports its end within its grace period, plus this; or its service goes.
STOP_SLACK = 10.0

# Task states before the container runs, and those a task never leaves.
WAITING = frozenset({"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready"})
ENDED = frozenset({"complete", "failed", "shutdown", "rejected", "orphaned", "remove"})


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiodocker.DockerError):
        return str(exc.message)
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def _missing(exc: BaseException) -> bool:
    return isinstance(exc, aiodocker.DockerError) and exc.status == 404


def _lost(reason: str, *, blameless: bool = False) -> Outcome:
    return Outcome(AttemptState.LOST, reason=reason, blameless=blameless)


@register
class SwarmRunner(Runner):
    """Runs each attempt as a one-replica ``replicated-job`` service on a Docker Swarm."""

    name = "swarm"

    def __init__(self, settings: Settings, instance: str) -> None:
        super().__init__(settings, instance)
        self._docker: aiodocker.Docker | None = None
        self.health = EngineHealth(self._ping)
        self.callbacks = callbackurl.CallbackAddress(settings)
        self.pool = SwarmCapacity(settings.max_parallel)
        self.nodes = NodeWatch(self.pool, self._query_json, self._events)
        self.tasks = TaskWatch(self._query_json)
        # Services taskd is stopping -> by when (loop time) their task must have ended.
        self._stopping: dict[str, float] = {}
        self._warned = False

    @property
    def available(self) -> bool:
        """False while the manager is unreachable: the engine holds swarm work meanwhile."""
        return self.health.up

    def _client(self) -> aiodocker.Docker:
        if self._docker is None:
            self._docker = aiodocker.Docker(timeout=_CLIENT_TIMEOUT)
        return self._docker

    async def _ping(self) -> None:
        async with self._client()._query("_ping", timeout=_PING_TIMEOUT, versioned_api=False):
            pass

    async def _query_json(self, path: str, method: str = "GET", **kwargs: Any) -> Any:
        return await self._client()._query_json(path, method, **kwargs)

    @contextlib.asynccontextmanager
    async def _request(
        self, path: str, params: Mapping[str, str] | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A long-running GET (logs, events) whose response is always released."""
        query = self._client()._query(path, params=dict(params or {}), timeout=_LONG_TIMEOUT)
        async with query as response:
            try:
                yield response
            finally:
                response.close()

    def _events(self, params: dict[str, str]) -> Any:
        return self._request("events", params)

    async def open(self, capacity_changed: Callable[[], None]) -> None:
        """Read the swarm's nodes and follow them; the engine re-dispatches on a change."""
        self.nodes.on_change = capacity_changed
        if await self.nodes.refresh():
            self.nodes.start()

    async def close(self) -> None:
        """Stop watching; services keep running (adopted at the next start)."""
        await self.nodes.close()
        await self.tasks.close()
        await self.health.close()
        if self._docker is not None:
            docker, self._docker = self._docker, None
            await docker.close()

    async def _outage(self, exc: BaseException) -> bool:
        """True when the manager is unreachable (the probe loop then waits for it)."""
        if not unreachable(exc):
            return False
        await self.health.lost(exc)
        return not self.health.up

    async def _retrying(self, call: Callable[[], Any]) -> Any:
        """``call()``, made again once the manager is back if it was unreachable meanwhile."""
        while True:
            try:
                return await call()
            except _API_ERRORS as exc:
                if not await self._outage(exc):
                    raise
            await self.health.wait_up()

    # -- start -------------------------------------------------------------------------

    async def start(self, ctx: AttemptContext) -> Started:
        """Create the attempt's service; Swarm places, pulls and starts it on its own."""
        if not ctx.job.image:
            raise StartFailed("a swarm job needs an image")
        if not self.health.up:
            raise EngineUnavailable("the Docker engine is unreachable")
        if not self.pool.known and not await self.nodes.refresh():
            raise StartFailed(self.pool.why_unknown)
        self.nodes.start()
        if self.pool.nodes > 1 and not self.settings.public_url and not self._warned:
            self._warned = True
            log.warning("the swarm has several nodes and --public-url is not set: jobs on "
                        "other nodes cannot call taskd back")  # fmt: skip
        try:
            url = await self.callbacks.url_for(self._client(), "bridge")
        except _API_ERRORS as exc:
            if await self._outage(exc):
                raise EngineUnavailable(
                    f"the Docker engine is unreachable: {_describe(exc)}"
                ) from exc
            url = None  # no bridge network here: TASKD_URL stays as configured
        try:
            spec = self.service_spec(ctx, url)
            # Sent as it is: the engine then asks no registry for the image's digest, and a
            # local image runs on a node that has it.
            made = await self._query_json("services/create", "POST", data=json.dumps(spec))
        except _API_ERRORS as exc:
            if await self._outage(exc):
                raise EngineUnavailable(
                    f"the Docker engine is unreachable: {_describe(exc)}"
                ) from exc
            raise StartFailed(f"cannot create swarm service for image {ctx.job.image}: "
                              f"{_describe(exc)}") from exc  # fmt: skip
        return Started(container_id=made["ID"], host=None)

    def service_spec(self, ctx: AttemptContext, url: str | None = None) -> dict[str, Any]:
        """The service of one attempt, as the engine's ``services/create`` takes it."""
        job = ctx.job
        env = job_env(ctx, None if self.settings.public_url else url)
        labels = job_labels(ctx, self.instance)
        container: dict[str, Any] = {
            "Image": job.image,
            "Env": [f"{k}={v}" for k, v in env.items()],
            "Labels": labels,
            "StopGracePeriod": int(self.settings.kill_grace * 1e9),
        }
        if job.command:
            container["Args"] = list(job.command)
        if job.workdir:
            container["Dir"] = job.workdir
        if job.volumes:
            container["Mounts"] = [
                {"Type": "bind", "Source": v.host_path, "Target": v.container_path,
                 "ReadOnly": v.read_only}
                for v in job.volumes
            ]  # fmt: skip
        resources: dict[str, Any] = {}
        if job.cpus > 0:
            cpus = int(job.cpus * 1e9)
            resources["Limits"] = {"NanoCPUs": cpus}
            resources["Reservations"] = {"NanoCPUs": cpus}
        if job.memory_mb > 0:
            memory = job.memory_mb * 2**20
            resources.setdefault("Limits", {})["MemoryBytes"] = memory
            resources.setdefault("Reservations", {})["MemoryBytes"] = memory
        placement: dict[str, Any] = {}
        if job.constraints:
            placement["Constraints"] = list(job.constraints)
        if job.preferences:
            placement["Preferences"] = [
                {"Spread": {"SpreadDescriptor": p}} for p in job.preferences
            ]
        return {
            "Name": ctx.name or f"taskd-{ctx.attempt_uuid}",
            "Labels": labels,
            "TaskTemplate": {
                "ContainerSpec": container,
                "Resources": resources,
                "RestartPolicy": {"Condition": "none", "MaxAttempts": 0},
                "Placement": placement,
            },
            "Mode": {"Replicated": {"Replicas": 1}},
        }

    # -- wait / adopt ------------------------------------------------------------------

    async def wait(
        self,
        ctx: AttemptContext,
        started: Started,
        sink: OutputSink,
        skip: Mapping[str, int] | None = None,
    ) -> Outcome:
        """Stream the service's output into ``sink`` until its task ends; return how."""
        service = started.container_id or await self._retrying(lambda: self._find(ctx))
        if service is None:
            return _lost("swarm service not found")
        return await self._watch(ctx, service, sink, skip or {})

    async def adopt(
        self,
        ctx: AttemptContext,
        started: Started,
        sink: OutputSink,
        skip: Mapping[str, int],
    ) -> Outcome:
        """Take over a service left by a previous taskd process; return how it ended."""
        service = started.container_id or await self._retrying(lambda: self._find(ctx))
        if service is None:
            return _lost(f"swarm service of attempt {ctx.attempt_uuid} gone after restart",
                         blameless=True)  # fmt: skip
        return await self._watch(ctx, service, sink, skip, adopted=True)

    async def _watch(
        self,
        ctx: AttemptContext,
        service: str,
        sink: OutputSink,
        skip: Mapping[str, int],
        adopted: bool = False,
    ) -> Outcome:
        deadline = asyncio.get_running_loop().time() + (
            ctx.job.pull_timeout or DEFAULT_SCHEDULE_TIMEOUT
        )
        logs: list[TaskLog] = []
        pumps: list[asyncio.Task[None]] = []
        try:
            while True:
                tasks = await self._retrying(lambda: self.tasks.of(service))
                stop_by = self._stopping.get(service)
                if tasks is None:
                    # Removed by someone else: what it printed is gone with it.
                    return _lost("swarm service removed", blameless=adopted and stop_by is None)
                if stop_by is not None and asyncio.get_running_loop().time() > stop_by:
                    await self._remove(service)
                    return _lost("swarm service did not stop in time; removed")
                if len(tasks) > 1 and stop_by is None:
                    # Swarm moved the job elsewhere: a new attempt runs it, this one is fenced.
                    await self._remove(service)
                    return _lost("Swarm rescheduled the job onto another node", blameless=True)
                task = tasks[0] if tasks else None
                state = task["Status"]["State"] if task else "new"
                if task is not None and not logs and state not in WAITING:
                    logs = [TaskLog(self._request, task["ID"], s, sink, skip.get(s, 0))
                            for s in STREAMS]  # fmt: skip
                    pumps = [asyncio.create_task(lg.follow()) for lg in logs]
                if state in ENDED:
                    break
                if state in WAITING and asyncio.get_running_loop().time() > deadline:
                    await self._remove(service)
                    status = (task or {}).get("Status", {})
                    why = status.get("Err") or status.get("Message", "")
                    return Outcome(
                        AttemptState.START_FAILED,
                        reason=f"no swarm node ran the job within "
                        f"{ctx.job.pull_timeout or DEFAULT_SCHEDULE_TIMEOUT:g}s "
                        f"(the task is {state}: {why or 'no reason given'})",
                    )
            assert task is not None
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for lg in logs:
                # The follow does not end with the task and may miss its unterminated last
                # line: read the whole stream once more; what the sink has is skipped.
                with contextlib.suppress(*_API_ERRORS, ValueError):
                    await self._retrying(lg.read_all)
            return self._outcome(ctx, task)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    def _outcome(self, ctx: AttemptContext, task: Mapping[str, Any]) -> Outcome:
        status = task["Status"]
        state = status["State"]
        code = (status.get("ContainerStatus") or {}).get("ExitCode")
        if state in ("complete", "failed") and code is not None and "ContainerStatus" in status:
            reason = None
            if state == "failed" and code == 0:
                reason = status.get("Err") or "the swarm task failed"
            elif code == 137 and ctx.job.memory_mb > 0:
                reason = f"killed, maybe out of memory (limit {ctx.job.memory_mb} MiB)"
            return Outcome(AttemptState.EXITED, exit_code=code, reason=reason)
        err = status.get("Err") or status.get("Message") or state
        if state == "rejected" or (state == "failed" and code is None):
            return Outcome(AttemptState.START_FAILED, reason=f"swarm rejected the job: {err}")
        # shutdown, orphaned, remove: taskd, the node or the manager ended it, not the job.
        return Outcome(AttemptState.LOST, exit_code=code, blameless=True,
                       reason=f"the swarm task ended as {state}: {err}")  # fmt: skip

    # -- kill / cleanup / sweep --------------------------------------------------------

    async def kill(self, ctx: AttemptContext, started: Started, grace: float) -> None:
        """Stop the job: SIGTERM, SIGKILL after ``grace`` seconds; the service goes after.

        The service is scaled to no replica rather than removed at once, so that what the
        job prints while it stops can still be read; its removal follows as soon as the
        outcome is stored (or at once if it cannot be scaled).
        """
        service = started.container_id or await self._retrying(lambda: self._find(ctx))
        if service is None:
            return
        self._stopping[service] = asyncio.get_running_loop().time() + grace + STOP_SLACK
        try:
            await self._retrying(lambda: self._scale_to_zero(service, grace))
        except aiodocker.DockerError as exc:
            log.warning("cannot stop swarm service; removing it", service=service,
                        error=_describe(exc))  # fmt: skip
            await self._retrying(lambda: self._remove(service))
        self.tasks.poke(service)

    async def _scale_to_zero(self, service: str, grace: float) -> None:
        info = await self._query_json(f"services/{service}")
        spec = info["Spec"]
        spec["Mode"] = {"Replicated": {"Replicas": 0}}
        spec["TaskTemplate"]["ContainerSpec"]["StopGracePeriod"] = int(max(0.0, grace) * 1e9)
        await self._query_json(
            f"services/{service}/update", "POST",
            params={"version": str(info["Version"]["Index"])}, data=json.dumps(spec),
        )  # fmt: skip

    async def cleanup(self, ctx: AttemptContext, started: Started) -> None:
        """Remove the service once its outcome is stored; a gone service is fine."""
        service = started.container_id or await self._retrying(lambda: self._find(ctx))
        if service is not None:
            await self._retrying(lambda: self._remove(service))
            self._stopping.pop(service, None)

    async def sweep(self, instance: str, known: set[str]) -> list[str]:
        """Remove this instance's services whose attempt is not in ``known``."""
        if not self.pool.known and not await self.nodes.refresh():
            return []  # not a swarm manager: no service of ours can exist here
        removed = []
        for info in await self._list({"taskd.instance": instance}):
            labels = info["Spec"].get("Labels") or {}
            if labels.get("taskd.instance") != instance or labels.get("taskd.attempt") in known:
                continue
            if await self._remove(info["ID"]):
                removed.append(info["ID"])
        return removed

    async def _remove(self, service: str) -> bool:
        """Remove a service; False when it was already gone."""
        try:
            await self._query_json(f"services/{service}", "DELETE")
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def _find(self, ctx: AttemptContext) -> str | None:
        found = await self._list({"taskd.instance": self.instance,
                                  "taskd.attempt": ctx.attempt_uuid})  # fmt: skip
        return found[0]["ID"] if found else None

    async def _list(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        filters = json.dumps({"label": [f"{k}={v}" for k, v in labels.items()]})
        return await self._query_json("services", params={"filters": filters})
