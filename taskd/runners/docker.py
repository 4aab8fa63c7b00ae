"""The Docker backend: every attempt is one container on the local engine.

Containers carry labels naming this taskd database (``taskd.instance``) and the attempt
(``taskd.attempt``), so a restarted taskd can find its containers again (``adopt``) and remove
the ones it no longer knows (``sweep``) without touching anything else on the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import aiodocker
import aiohttp
from aiodocker.containers import DockerContainer

from taskd.config import Settings
from taskd.log import get_logger
from taskd.models import AttemptState, Outcome
from taskd.runners import callbackurl
from taskd.runners.base import (
    AttemptContext,
    EngineUnavailable,
    OutputSink,
    Runner,
    Started,
    StartFailed,
    register,
)
from taskd.runners.containerspec import container_config
from taskd.runners.dockercontrol import ContainerControl
from taskd.runners.dockerengine import (
    API_ERRORS,
    EngineHealth,
    is_missing,
    unreachable,
    wait_result,
)
from taskd.runners.dockerlogs import RETRY_DELAY, WAIT_RETRIES, ContainerLogs, unix_time

log = get_logger("taskd.docker")

T = TypeVar("T")

# How long the log streams may take to deliver their last bytes once the container exited,
# before they are read again without following.
DRAIN_TIMEOUT = 10.0
# Bounds every request that is not long-running by nature (logs, wait, stop, pull).
_CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=120, sock_connect=10)
_LONG_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10)
_PING_TIMEOUT = aiohttp.ClientTimeout(total=10, sock_connect=5)


def _lost(reason: str, *, blameless: bool = False) -> Outcome:
    return Outcome(AttemptState.LOST, reason=reason, blameless=blameless)


# A container stopped by the engine's own shutdown ends by a signal (SIGTERM, then SIGKILL).
_SIGNALLED = 128
# The engine stops its containers before it closes its API, each within its stop timeout
# (10 s by default, the engine's own shutdown timeout is 15 s): how long after a signalled
# exit taskd watches for the engine going away before it takes the exit as the job's own.
SHUTDOWN_SETTLE = 20.0


def _unavailable(exc: BaseException) -> EngineUnavailable:
    return EngineUnavailable(f"the Docker engine is unreachable: {_describe(exc)}")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiodocker.DockerError):
        return str(exc.message)
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


@register
class DockerRunner(ContainerControl, Runner):
    """Runs each attempt as a container on the local Docker engine."""

    name = "docker"

    def __init__(self, settings: Settings, instance: str) -> None:
        super().__init__(settings, instance)
        self._docker: aiodocker.Docker | None = None
        self._network: str | None = None
        self.health = EngineHealth(self._ping)
        self.callbacks = callbackurl.CallbackAddress(settings)
        # Attempts whose start the engine broke off: their half-made container goes once the
        # engine is back.
        self._unfinished_starts: set[str] = set()
        self._stopping: set[str] = set()  # containers taskd itself is stopping
        self._removals: set[asyncio.Task[None]] = set()
        self.health.on_up.append(self._after_outage)

    @property
    def available(self) -> bool:
        """False while the engine is unreachable: the engine holds container work meanwhile."""
        return self.health.up

    async def _ping(self) -> None:
        async with self._client()._query("_ping", timeout=_PING_TIMEOUT, versioned_api=False):
            pass

    async def _engine(self, exc: BaseException) -> bool:
        """True when the engine is unreachable: ``exc`` is no answer and a ping fails too.

        The outage is then recorded and the probe loop waits for the engine's return.
        """
        if not unreachable(exc):
            return False
        await self.health.lost(exc)
        return not self.health.up

    def _client(self) -> aiodocker.Docker:
        # Created on first use: the client needs a running event loop.
        if self._docker is None:
            self._docker = aiodocker.Docker(timeout=_CLIENT_TIMEOUT)
        return self._docker

    async def close(self) -> None:
        """Close the connection to the engine; containers keep running."""
        await self.health.close()
        if self._docker is not None:
            docker, self._docker = self._docker, None
            await docker.close()

    @contextlib.asynccontextmanager
    async def _request(
        self, path: str, method: str = "GET", params: dict[str, str] | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A long-running engine request (logs, wait, pull) whose response is always released.

        The client's own helpers for these leave the connection open when the caller is
        cancelled halfway, which happens to every watcher at shutdown.
        """
        query = self._client()._query(path, method, params=params, timeout=_LONG_TIMEOUT)
        async with query as response:
            try:
                yield response
            finally:
                response.close()

    # -- start -------------------------------------------------------------------------

    async def start(self, ctx: AttemptContext) -> Started:
        """Create and start the attempt's container, pulling its image if the engine lacks it."""
        job = ctx.job
        if not job.image:
            raise StartFailed("a docker job needs an image")
        if not self.health.up:
            raise EngineUnavailable("the Docker engine is unreachable")
        outages = self.health.outages
        docker = self._client()
        try:
            network = await self._network_mode()
            url = await self.callbacks.url_for(docker, network)
        except API_ERRORS as exc:
            if await self._engine(exc):
                raise _unavailable(exc) from exc
            raise StartFailed(f"cannot list docker networks: {_describe(exc)}") from exc

        container: DockerContainer | None = None
        try:
            container = await self._create(ctx, container_config(ctx, self.instance, network, url))
            await container.start()
        except BaseException as exc:
            # Whatever went wrong (cancellation included), leave no half-made container behind.
            if container is not None:
                with contextlib.suppress(*API_ERRORS):
                    await container.delete(force=True)
            if isinstance(exc, API_ERRORS) and (
                await self._engine(exc) or await self._refused_by_shutdown(exc, outages)
            ):
                # It may have been made before the engine went: remove it once it is back.
                self._unfinished_starts.add(ctx.attempt_uuid)
                raise _unavailable(exc) from exc
            if isinstance(exc, API_ERRORS):
                action = "start" if container is not None else "create"
                raise StartFailed(
                    f"cannot {action} container for image {job.image}: {_describe(exc)}"
                ) from exc
            raise
        return Started(container_id=container.id, host=self.settings.hostname)

    async def _create(self, ctx: AttemptContext, config: dict[str, Any]) -> DockerContainer:
        """Create the container; its image is looked at (and pulled) only when the engine
        answers that something is missing, which spares a request per start."""
        containers, name = self._client().containers, ctx.name or None
        try:
            return await containers.create(config, name=name)
        except aiodocker.DockerError as exc:
            if not is_missing(exc):
                raise
        # The image is missing (or the network: then the second create says so).
        await self._ensure_image(ctx.job.image, ctx.job.pull_timeout)
        return await containers.create(config, name=name)

    async def _ensure_image(self, image: str, pull_timeout: float) -> None:
        try:
            await self._client().images.inspect(image)
            return
        except API_ERRORS as exc:
            if await self._engine(exc):
                raise _unavailable(exc) from exc
            if not is_missing(exc):
                raise StartFailed(f"cannot inspect image {image}: {_describe(exc)}") from exc
        try:
            async with asyncio.timeout(pull_timeout):
                error = await self._pull(image)
        except API_ERRORS as exc:
            if isinstance(exc, TimeoutError):
                error = f"timed out after {pull_timeout:g}s"
            else:
                error = f"failed: {_describe(exc)}"
        if error:
            raise StartFailed(f"image {image} is not present and pulling it {error}")

    async def _pull(self, image: str) -> str | None:
        """Pull an image; the error the engine reported, if any."""
        # Without a tag the engine would pull every tag of the repository.
        if "@" not in image and ":" not in image.rsplit("/", 1)[-1]:
            image += ":latest"
        async with self._request("images/create", "POST", {"fromImage": image}) as response:
            async for line in response.content:
                if line.strip() and "error" in (progress := json.loads(line)):
                    return f"failed: {progress['error']}"
        return None

    async def _network_mode(self) -> str:
        wanted = self.settings.docker_network
        if wanted != "auto":
            return wanted
        if self._network is None:
            networks = await self._client().networks.list()
            names = {n.get("Name") for n in networks}
            self._network = "bridge" if "bridge" in names else "none"
            if self._network == "none":
                log.warning("the Docker engine has no bridge network: containers run with "
                            "network none and cannot call taskd back; set --docker-network "
                            "host, or --public-url")  # fmt: skip
        return self._network

    # -- wait / adopt ------------------------------------------------------------------

    async def _through_outages(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, made again once the engine is back if it was unreachable meanwhile."""
        while True:
            try:
                return await call()
            except API_ERRORS as exc:
                if not await self._engine(exc):
                    raise
            await self.health.wait_up()

    async def wait(
        self,
        ctx: AttemptContext,
        started: Started,
        sink: OutputSink,
        skip: Mapping[str, int] | None = None,
    ) -> Outcome:
        """Stream the container's output into ``sink`` until it exits; return how it ended."""
        container_id = started.container_id or await self._through_outages(
            lambda: self._find(ctx.attempt_uuid)
        )
        if container_id is None:
            return _lost("container not found")
        return await self._watch(ctx, container_id, sink, skip or {})

    async def adopt(
        self,
        ctx: AttemptContext,
        started: Started,
        sink: OutputSink,
        skip: Mapping[str, int],
    ) -> Outcome:
        """Take over a container left by a previous taskd process; return how it ended.

        A container that is gone (or was never started) went with taskd's crash, not through
        the job: that attempt is ``lost`` but blameless, so the task runs once more.
        """
        outages = self.health.outages  # an outage met while taking over counts as one too
        container_id = started.container_id or await self._through_outages(
            lambda: self._find(ctx.attempt_uuid)
        )
        what = container_id or f"of attempt {ctx.attempt_uuid}"
        if container_id is None:
            return _lost(f"container {what} gone after restart", blameless=True)
        container = self._client().containers.container(container_id)
        try:
            info = await self._through_outages(container.show)
        except API_ERRORS as exc:
            if is_missing(exc):
                return _lost(f"container {what} gone after restart", blameless=True)
            return _lost(f"cannot inspect container {what}: {_describe(exc)}")
        if info["State"]["Status"] == "created":
            # taskd died between create and start: the job never ran.
            with contextlib.suppress(*API_ERRORS):
                await container.delete(force=True)
            return _lost(f"container {what} was created but never started", blameless=True)
        # One that ended while taskd was away cannot be told apart any more: no settling.
        settle = bool(info["State"].get("Running"))
        return await self._watch(ctx, container_id, sink, skip, outages, settle=settle)

    async def _watch(
        self,
        ctx: AttemptContext,
        container_id: str,
        sink: OutputSink,
        skip: Mapping[str, int],
        outages: int | None = None,
        *,
        settle: bool = True,
    ) -> Outcome:
        container = self._client().containers.container(container_id)
        logs = ContainerLogs(self, container_id, sink, skip)
        exited = asyncio.Event()  # set once the engine's wait returned
        pump = asyncio.create_task(logs.follow(exited))
        interrupted = False  # the engine went away while the container ran
        if outages is None:
            outages = self.health.outages
        try:
            error: BaseException | None = None
            failures = 0
            while True:
                try:
                    async with self._request(f"containers/{container_id}/wait", "POST") as resp:
                        body = await resp.read()
                    break
                except API_ERRORS as exc:
                    if is_missing(exc):
                        return _lost(f"container {container_id} gone", blameless=interrupted)
                    if await self._engine(exc):
                        interrupted = True
                        await self.health.wait_up()
                        continue
                    error = exc
                failures += 1
                if failures > WAIT_RETRIES:
                    return _lost(f"lost track of container {container_id}: {_describe(error)}")
                await asyncio.sleep(RETRY_DELAY)

            exited.set()
            # The follow ends once the container stopped; give it time while it progresses.
            while True:
                mark = logs.position
                _, pending = await asyncio.wait([pump], timeout=DRAIN_TIMEOUT)
                if not pending or mark == logs.position:
                    break
            complete = pump.done() and not pump.cancelled() and not pump.exception()
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            # The engine's follow can end before it delivered the container's last entries:
            # read on from the last entries seen. Streams that stalled or broke are read again
            # in full.
            with contextlib.suppress(*API_ERRORS, ValueError):
                await (logs.catch_up() if complete else logs.read_all())

            code, error_text = wait_result(body)
            state: Mapping[str, Any] = {"ExitCode": code, "Error": error_text}
            # The wait tells the exit status; only a failure (was it the engine's doing?) or a
            # memory limit (was it hit?) needs the container's full state.
            if code != 0 or ctx.job.memory_mb > 0:
                try:
                    info = await self._through_outages(container.show)
                except API_ERRORS as exc:
                    if is_missing(exc):
                        return _lost(f"container {container_id} gone", blameless=interrupted)
                    return _lost(f"cannot inspect container {container_id}: {_describe(exc)}")
                state = info["State"]
            if container_id not in self._stopping and await self._ended_by_engine(
                state, interrupted, outages, settle
            ):
                # Stopped by the engine's own shutdown (no live-restore), not by the job.
                return _lost(
                    f"the Docker engine stopped the container while it went down "
                    f"(exit status {state.get('ExitCode')})",
                    blameless=True,
                )
            return self._outcome(ctx, state)
        finally:
            self._stopping.discard(container_id)
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)

    async def _ended_by_engine(
        self, state: Mapping[str, Any], interrupted: bool, outages: int, settle: bool
    ) -> bool:
        """Whether a failed exit was the engine's doing rather than the job's.

        Any failure that happened during an outage (or in the seconds before the engine was
        found gone, while it stopped its containers) counts. A signalled exit also counts
        when the engine went away while taskd watched, or goes away within the settle time.
        """
        code = state.get("ExitCode") or 0
        if code == 0 or state.get("OOMKilled"):
            return False
        if self.health.around_outage(_finished_at(state)):
            return True
        if code < _SIGNALLED:
            return False
        if interrupted or self.health.outages != outages:
            return True
        return settle and await self._engine_going_down(outages)

    async def _refused_by_shutdown(self, exc: BaseException, outages: int) -> bool:
        """Whether an engine error (5xx) came from an engine in the middle of shutting down.

        A shutting-down engine still answers, but fails to create or start containers.
        """
        if not isinstance(exc, aiodocker.DockerError) or exc.status < 500:
            return False
        return await self._engine_going_down(outages)

    async def _engine_going_down(self, outages: int) -> bool:
        """Whether the engine shuts down now: its event stream ends within the settle time.

        Without live-restore the engine stops every container before it closes its API, so a
        container killed by the engine's shutdown looks like one killed by a signal. Only such
        exits wait here, and only the engine closing the stream ends the wait early.
        """
        params = {"filters": json.dumps({"type": ["daemon"]})}
        try:
            async with asyncio.timeout(SHUTDOWN_SETTLE):
                async with self._request("events", params=params) as response:
                    async for _ in response.content.iter_any():
                        pass
        except TimeoutError:
            return self.health.outages != outages
        except API_ERRORS as exc:
            await self._engine(exc)
        else:
            await self._engine(aiohttp.ServerDisconnectedError("the event stream ended"))
        return self.health.outages != outages

    def _outcome(self, ctx: AttemptContext, state: Mapping[str, Any]) -> Outcome:
        oom = bool(state.get("OOMKilled"))
        reason = None
        if oom:
            limit = f" (limit {ctx.job.memory_mb} MiB)" if ctx.job.memory_mb > 0 else ""
            reason = f"out of memory{limit}"
        elif state.get("Error"):
            reason = str(state["Error"])
        return Outcome(AttemptState.EXITED, exit_code=state.get("ExitCode"), oom=oom, reason=reason)


def _finished_at(state: Mapping[str, Any]) -> float | None:
    """When the container ended, in seconds since the epoch; None if unknown."""
    try:
        return float(unix_time(str(state.get("FinishedAt") or "")))
    except ValueError:
        return None
