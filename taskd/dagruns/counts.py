"""Task counts of the DAG runs submitted here, kept as the engine commits their changes.

``GET /v1/dagruns`` answers each run's tasks counted by state. Counting them in the store reads
every task row: for a run of 100,000 tasks about 100-200 ms on every call, for as long as the
run goes on. Here each run submitted by this server is counted once, when it is stored, and
then moved along by the engine's committed batches (``Engine.committed``), so the counts are
those of the store, never of decisions not yet written. A run this server did not submit
(recovered at start), or whose graph was rebuilt after a failed write (the rebuild writes
without telling observers), is counted in the store as before.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from taskd.engine.graph import RunNode
from taskd.models import RUN_TERMINAL, TaskState
from taskd.store.runs import initial_state


@dataclass(eq=False)
class Tally:
    """One run's committed task states."""

    node: RunNode  # the graph it was made for; another graph for the run means a rebuild
    counts: Counter[str]
    last: int  # the latest updated_at of its tasks' changes (0: none since it was stored)
    # Tasks whose state has changed since the run was stored; the others are still in their
    # first state (waiting when they have parents, else ready).
    changed: dict[int, str] = field(default_factory=dict)

    def first_state(self, task_id: int) -> str:
        # Generated tasks get the generator as a parent, so "has parents" is still the rule.
        task = self.node.tasks.get(task_id)
        return TaskState.WAITING if task is not None and task.parents else TaskState.READY


class Counts:
    """Committed task counts of active DAG runs, by run id."""

    def __init__(self) -> None:
        self.runs: dict[int, Tally] = {}
        # Runs being submitted, by uuid: (ready, waiting) as they are stored. Between the
        # commit and ``stored`` the list may see such a run; nothing of it changes meanwhile.
        self.pending: dict[str, tuple[int, int]] = {}
        self.engine: Any = None

    def attach(self, engine: Any) -> None:
        self.engine = engine
        engine.committed.append(self.committed)

    def submitting(self, uuid: str, ready: int, total: int) -> None:
        """A run with this uuid is about to be stored with ``ready`` of ``total`` tasks ready."""
        self.pending[uuid] = (ready, total - ready)

    def submitted(self, uuid: str) -> None:
        """The submission ended (stored and counted by ``stored``, or failed)."""
        self.pending.pop(uuid, None)

    def first_counts(self, uuid: str) -> dict[str, int] | None:
        """The counts of a run being submitted, or None."""
        got = self.pending.get(uuid)
        if got is None:
            return None
        counts = {TaskState.READY: got[0], TaskState.WAITING: got[1]}
        return {state: n for state, n in counts.items() if n}

    def stored(self, run: RunNode, ready: int) -> None:
        """A run was just stored with ``ready`` tasks ready and the others waiting.

        Called before anything of it can change (nothing is dispatched before the handler
        resumes), so the graph's states are the stored ones. Its tasks were stored with the
        run's own ``updated_at``, which the store's run row still gives.
        """
        total = len(run.tasks)
        counts: Counter[str] = Counter()
        if ready:
            counts[TaskState.READY] = ready
        if total - ready:
            counts[TaskState.WAITING] = total - ready
        self.runs[run.id] = Tally(run, counts, 0)

    def committed(self, ch: Any) -> None:
        """Move the counts along with a batch the store has taken (an engine observer)."""
        if not self.runs:
            return
        ended = []
        for run_id, task_id, state in ch.history:
            tally = self.runs.get(run_id)
            if tally is None:
                continue
            if task_id is None:
                if state in RUN_TERMINAL:
                    ended.append(run_id)
                continue
            old = tally.changed.get(task_id) or tally.first_state(task_id)
            tally.changed[task_id] = state
            tally.counts[old] -= 1
            tally.counts[state] += 1
            tally.last = max(tally.last, ch.at)
        for run_id, templates, _ids, _edges in ch.generated:
            tally = self.runs.get(run_id)
            if tally is not None:
                for t in templates:
                    tally.counts[initial_state(t)] += 1
                tally.last = max(tally.last, ch.at)
        if ch.tasks:
            for tally in self.runs.values():  # only the few runs counted here
                if tally.last < ch.at and not ch.tasks.keys().isdisjoint(tally.node.tasks):
                    tally.last = ch.at
        for run_id in ended:  # after the batch's own task changes: it may be listed meanwhile
            self.runs.pop(run_id, None)  # counted in the store from now on

    def summary(self, tally: Tally) -> dict[str, int]:
        """The counts by core state, without the states no task is in."""
        return {state: n for state, n in tally.counts.items() if n}

    def known(self) -> dict[int, Tally]:
        """The runs counted here whose graph is still the one they were counted with."""
        runs = self.engine.runs if self.engine is not None else {}
        for run_id in [r for r, t in self.runs.items() if runs.get(r) is not t.node]:
            del self.runs[run_id]  # rebuilt (or gone): from the store from now on
        return dict(self.runs)
