"""The outbox's store side on a real SQLite file: queued with the run's end, pruned later."""

from __future__ import annotations

import orjson
import pytest

from taskd.store import Store
from taskd.store import notifications as q
from taskd.store.runs import Changes, apply


async def test_a_run_end_and_its_messages_commit_together_or_not_at_all(tmp_path):
    store = await Store.open(tmp_path / "taskd.db")
    try:
        doc = {"notifications": [{"webhook": {"url": "http://x/", "notify_when": "always"}}],
               "paused": False}  # fmt: skip

        def setup(db):
            db.execute("INSERT INTO definitions (name, version, doc, paused, created_at,"
                       " updated_at) VALUES ('d', 1, ?, 0, 0, 0)", (orjson.dumps(doc).decode(),))  # fmt: skip
            return db.execute(
                "INSERT INTO runs (uuid, kind, name, trigger, state, created_at, updated_at)"
                " VALUES ('u1', 'process', 'd', 'api', 'running', 0, 0)").lastrowid  # fmt: skip

        run_id = await store.write(setup)

        def boom(db):
            raise RuntimeError("the disk is gone")

        ch = Changes(at=10)
        ch.run(run_id, state="failed", ended_at=10)
        ch.also.append(lambda db: q.on_run_end(db, run_id=run_id, at=10))
        ch.also.append(boom)
        with pytest.raises(Exception, match="the disk is gone"):
            await store.write(apply, ch)
        rows = await store.read(lambda db: db.execute("SELECT * FROM outbox").fetchall())
        state = await store.read(
            lambda db: db.execute("SELECT state FROM runs WHERE id = ?", (run_id,)).fetchone()[0])  # fmt: skip
        assert rows == [] and state == "running"  # neither the end nor its message

        ch = Changes(at=10)
        ch.run(run_id, state="failed", ended_at=10)
        ch.also.append(lambda db: q.on_run_end(db, run_id=run_id, at=10))
        await store.write(apply, ch)
        (row,) = await store.read(q.history, "d")
        assert row["event"] == "notify" and row["state"] == "pending"
        assert orjson.loads(row["payload"])["status"] == "failed"

        await store.write(q.delivered, row["id"], 20)
        assert await store.read(q.oldest_done) == 10
        assert await store.write(q.prune, 5) == 0  # newer than the cut: kept
        assert await store.write(q.prune, 11) == 1
        assert await store.read(q.history, "d") == []
    finally:
        await store.close()
