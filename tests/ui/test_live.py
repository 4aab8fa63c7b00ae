"""The dashboard's live hub: committed changes reach the pages that follow them, boundedly."""

from __future__ import annotations

from taskd.store.runs import Changes
from taskd.web import live


def batch(*history: tuple[int, int | None, str]) -> Changes:
    ch = Changes(at=0)
    ch.history.extend(history)
    return ch


async def test_a_run_page_gets_its_runs_changes_only_and_the_overview_is_woken():
    hub = live.Hub()
    with hub.follow_run(1) as mine, hub.follow_run(2) as other, hub.follow_all() as anything:
        hub.committed(batch((1, 10, "running"), (1, None, "running")))
        assert [mine.get_nowait(), mine.get_nowait()] == [
            ("task", 10, "running"),
            ("run", 1, "running"),
        ]
        assert other.empty()
        assert anything.is_set()
        assert len(hub) == 3
    assert len(hub) == 0  # leaving the block unsubscribes
    hub.committed(batch((1, 10, "succeeded")))  # nobody follows: nothing kept


async def test_a_page_too_far_behind_is_told_to_reload_instead_of_holding_memory(monkeypatch):
    monkeypatch.setattr(live, "QUEUE_SIZE", 3)
    hub = live.Hub()
    with hub.follow_run(1) as queue:
        hub.committed(batch(*[(1, t, "running") for t in range(10)]))
        assert queue.qsize() <= 3
        items = [queue.get_nowait() for _ in range(queue.qsize())]
        assert live.RELOAD in items
