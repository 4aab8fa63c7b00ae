"""Stopping and removing the docker runner's containers, and finding them by their labels.

Part of ``DockerRunner`` (a base class of it): kill with a grace period, clean-up after an
attempt, the sweep of containers taskd no longer knows, and the removal of half-made ones
once an engine outage is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import aiodocker
import aiohttp

from taskd.config import Settings
from taskd.runners.base import AttemptContext, Started
from taskd.runners.dockerengine import API_ERRORS

T = TypeVar("T")

# A stop is answered only once the container stopped, up to its grace period later.
_STOP_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10)


class ContainerControl:
    """Kill, clean-up and sweep of a docker runner's containers (mixed into ``DockerRunner``)."""

    settings: Settings
    instance: str
    _unfinished_starts: set[str]  # attempts whose half-made container goes once the engine is back
    _stopping: set[str]  # containers taskd itself is stopping
    _removals: set[asyncio.Task[None]]

    if TYPE_CHECKING:  # provided by DockerRunner

        def _client(self) -> aiodocker.Docker: ...

        async def _through_outages(self, call: Callable[[], Awaitable[T]]) -> T: ...

    def _after_outage(self) -> None:
        if self._unfinished_starts:
            uuids, self._unfinished_starts = self._unfinished_starts, set()
            task = asyncio.get_running_loop().create_task(self._remove_unstarted(uuids))
            # The loop keeps only weak references to tasks.
            self._removals.add(task)
            task.add_done_callback(self._removals.discard)

    async def _remove_unstarted(self, uuids: set[str]) -> None:
        for attempt_uuid in uuids:
            with contextlib.suppress(*API_ERRORS):
                found = await self._find(attempt_uuid)
                if found is not None:
                    await self._remove(found)

    async def kill(self, ctx: AttemptContext, started: Started, grace: float) -> None:
        """Send SIGTERM, and SIGKILL after ``grace`` seconds; a gone container is fine.

        Waits for an unreachable engine to come back. The request has no total time limit:
        the engine answers only once the container stopped, up to ``grace`` seconds later.
        """
        container_id = started.container_id or await self._through_outages(
            lambda: self._find(ctx.attempt_uuid)
        )
        if container_id is None:
            return
        self._stopping.add(container_id)
        params = {"t": str(max(0, math.ceil(grace)))}

        async def stop() -> None:
            async with self._client()._query(
                f"containers/{container_id}/stop", "POST", params=params, timeout=_STOP_TIMEOUT
            ):
                pass

        try:
            await self._through_outages(stop)
        except aiodocker.DockerError as exc:
            if exc.status not in (304, 404, 409):
                raise

    async def cleanup(self, ctx: AttemptContext, started: Started) -> None:
        """Remove the container unless settings keep them; a gone container is fine."""
        if self.settings.docker_keep_containers:
            return
        container_id = started.container_id or await self._through_outages(
            lambda: self._find(ctx.attempt_uuid)
        )
        if container_id is not None:
            await self._through_outages(lambda: self._remove(container_id))

    async def sweep(self, instance: str, known: set[str]) -> list[str]:
        """Remove this instance's containers whose attempt is not in ``known``."""
        removed = []
        for info in await self._list({"taskd.instance": instance}):
            labels = info["Labels"] or {}
            # The engine filtered on the label already; check again before destroying anything.
            if labels.get("taskd.instance") != instance or labels.get("taskd.attempt") in known:
                continue
            container = self._client().containers.container(info["Id"])
            with contextlib.suppress(*API_ERRORS):
                await container.stop(t=0)
            if await self._remove(info["Id"]):
                removed.append(info["Id"])
        return removed

    async def _remove(self, container_id: str) -> bool:
        """Force-remove a container; False when it was already gone."""
        container = self._client().containers.container(container_id)
        try:
            # With its anonymous volumes: nothing of the job's is left on the engine.
            await container.delete(force=True, v=True)
        except aiodocker.DockerError as exc:
            # 409: a removal is already in progress.
            if exc.status in (404, 409):
                return False
            raise
        return True

    async def _find(self, attempt_uuid: str) -> str | None:
        """The id of this instance's container for an attempt, preferring a started one."""
        found = await self._list({"taskd.instance": self.instance, "taskd.attempt": attempt_uuid})
        found.sort(key=lambda c: c.get("State") == "created")
        return found[0]["Id"] if found else None

    async def _list(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        containers = await self._client().containers.list(all=True, filters=json.dumps(filters))
        return [{"Id": c["Id"], "State": c["State"], "Labels": c["Labels"]} for c in containers]
