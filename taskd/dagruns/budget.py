"""How much work a submitted DAG asks for, known before any of it is done.

A few kilobytes of DAG can name parameters whose values multiply into hundreds of thousands of
tasks. What a request may ask for is bounded by who asks (a viewer's validation is small, an
admin's submission may be large), and the size, not the body's length, decides whether the
expansion runs on the event loop or in a thread.
"""

from __future__ import annotations

import contextlib
import gc
import math
import threading
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from taskd.dagruns.expand import PLACEHOLDER
from taskd.errors import BadRequest
from taskd.http.guard import principal_of
from taskd.http.keys import SERVICES

# Expanding this many tasks (or edges) takes a few milliseconds: beyond it, off the loop.
ON_LOOP_TASKS = 2_000
ON_LOOP_EDGES = 20_000


def expanded_size(body: Any) -> tuple[int, int]:
    """The tasks and edges ``body`` expands to, counted without expanding it.

    Never fails: what is malformed counts as one task (parsing reports it properly). Edges are
    counted from both ends, so the figure is an upper bound.
    """
    if not isinstance(body, dict) or not isinstance(body.get("tasks"), dict):
        return 0, 0
    params = body.get("parameters")
    counts = (
        {k: len(v) for k, v in params.items() if isinstance(v, list) and v}
        if isinstance(params, dict)
        else {}
    )
    sizes = {name: task_size(task, counts) for name, task in body["tasks"].items()}
    edges = 0
    for name, task in body["tasks"].items():
        if not isinstance(task, dict):
            continue
        for key in ("parents", "children"):
            linked = task.get(key)
            if isinstance(linked, list):
                edges += sum(sizes.get(n, 1) for n in linked if isinstance(n, str)) * sizes[name]
    return sum(sizes.values()), edges


def task_size(task: Any, counts: dict[str, int]) -> int:
    job = task.get("job") if isinstance(task, dict) else None
    if not isinstance(job, dict) or not counts:
        return 1
    found: set[str] = set()
    for key in ("command", "environment"):
        value = job.get(key)
        for s in value if isinstance(value, list) else [value]:
            if isinstance(s, str) and "{{" in s:
                found.update(PLACEHOLDER.findall(s))
    return math.prod(counts[p] for p in found if p in counts)


async def off_loop(request: web.Request, body: Any, *, big_body: bool = False) -> bool:
    """Whether expanding ``body`` belongs in a thread; BadRequest if the caller may not ask it.

    Admins may submit up to the hard bound of every DAG; viewers (who may only validate) get
    ``--viewer-max-dag-tasks`` and ten edges a task. An admin's ``big_body`` goes to a thread
    without being counted first: counting walks every task, and the parse bounds it anyway.
    """
    who = await principal_of(request)
    if who.is_admin and big_body:
        return True
    tasks, edges = expanded_size(body)
    if not who.is_admin:
        limit = request.app[SERVICES].settings.viewer_max_dag_tasks
        if tasks > limit or edges > 10 * limit:
            why = (
                f"the DAG expands to {tasks} tasks and {edges} edges; these credentials may "
                f"ask for at most {limit} tasks and {10 * limit} edges"
            )
            raise BadRequest(f"invalid DAG: {why}", details=[why])
    return big_body or tasks > ON_LOOP_TASKS or edges > ON_LOOP_EDGES


_paused = 0
_pause_lock = threading.Lock()


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a thread builds a large DAG.

    Building hundreds of thousands of objects triggers full collections, and one full
    collection holds the GIL for hundreds of milliseconds: the event loop could not run.
    Templates hold no reference cycles, so nothing is lost by collecting later. A submission
    keeps it paused from decoding the body until the run's graph is built (``kept_out``).
    """
    global _paused
    with _pause_lock:
        _paused += 1
        gc.disable()
    try:
        yield
    finally:
        with _pause_lock:
            _paused -= 1
            if not _paused:
                gc.enable()


def release(items: list[Any]) -> None:
    """Free a large list one item at a time, so the GIL can pass between items.

    Dropping the list at once is one long call that the event loop's thread must wait out.
    """
    while items:
        items.pop()


# Runs whose graph was frozen out of the collector's passes (gc.freeze) when they were built.
_frozen: set[int] = set()
_refreeze = False


def kept_out(run_id: int) -> None:
    """Keep what a large submission built out of every later collection (``gc.freeze``).

    Called with the collector still paused, right after the run's graph is built. Without it
    the new objects (about fifteen a task) would be walked by the next young collections and
    then by every full one: for 100,000 tasks, pauses of a few hundred milliseconds on the
    event loop, for as long as the run lives. The graph holds reference cycles, so when the
    run ends ``run_ended`` gives the frozen objects back to the collector.
    """
    gc.freeze()
    _frozen.add(run_id)


def run_ended(run_id: int) -> None:
    """A run ended: if its graph was frozen, let the collector reclaim it.

    Everything frozen goes back to the oldest generation (its graph cannot be told apart);
    what is still alive is frozen again after the next full collection (``_collected``).
    """
    global _refreeze
    if run_id in _frozen:
        _frozen.discard(run_id)
        gc.unfreeze()
        _refreeze = True


def watch_collections() -> None:
    """Refreeze after the full collection that followed an unfreeze (idempotent)."""
    if _collected not in gc.callbacks:
        gc.callbacks.append(_collected)


def _collected(phase: str, info: dict[str, Any]) -> None:
    # Runs inside the collector, on whatever thread allocated: only a flag and a freeze,
    # which moves lists of objects and allocates nothing.
    global _refreeze
    if _refreeze and phase == "stop" and info.get("generation") == 2:
        _refreeze = False
        gc.freeze()
