"""The store on real SQLite files: migrations, group commit, isolation of failures, backup."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from click.testing import CliRunner

from taskd.cli import main
from taskd.errors import Conflict, StoreError
from taskd.store import Store
from taskd.store.migrations import migrations


def test_migrations_are_numbered_without_gaps():
    numbers = [n for n, _ in migrations()]
    assert numbers == list(range(1, len(numbers) + 1))


async def test_fresh_database_is_migrated_to_the_newest_version(tmp_path):
    store = await Store.open(tmp_path / "a.db")
    await store.close()
    db = sqlite3.connect(tmp_path / "a.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == migrations()[-1][0]
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "tasks", "attempts", "ledger", "definitions"} <= tables


async def test_a_database_newer_than_the_code_is_refused(tmp_path):
    path = tmp_path / "new.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 9999")
    db.close()
    with pytest.raises(StoreError, match="newer than this taskd"):
        await Store.open(path)


async def test_concurrent_writes_commit_together_and_a_failure_stays_alone(tmp_path):
    store = await Store.open(tmp_path / "a.db")
    try:

        def put(db, key, value):
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))
            return key

        results = await asyncio.gather(
            *(store.write(put, f"k{i}", "v") for i in range(200)),
            store.write(put, "k5", "duplicate"),
            return_exceptions=True,
        )
        assert results[:200] == [f"k{i}" for i in range(200)]
        assert isinstance(results[200], Conflict)
        count = await store.read(lambda db: db.execute("SELECT COUNT(*) FROM meta").fetchone()[0])
        assert count == 200
    finally:
        await store.close()


async def test_backup_command_copies_a_live_database(tmp_path):
    store = await Store.open(tmp_path / "live.db")
    try:
        await store.write(lambda db: db.execute("INSERT INTO meta VALUES ('x', 'kept')"))
        result = CliRunner().invoke(
            main, ["backup", "--db", str(tmp_path / "live.db"), str(tmp_path / "copy.db")]
        )
        assert result.exit_code == 0, result.output
    finally:
        await store.close()
    copy = sqlite3.connect(tmp_path / "copy.db")
    assert copy.execute("SELECT value FROM meta WHERE key = 'x'").fetchone()[0] == "kept"
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    again = CliRunner().invoke(
        main, ["backup", "--db", str(tmp_path / "live.db"), str(tmp_path / "copy.db")]
    )
    assert again.exit_code != 0 and "refusing to overwrite" in again.output


def test_serve_refuses_a_public_bind_without_credentials(tmp_path, monkeypatch):
    monkeypatch.delenv("TASKD_ADMIN_TOKEN", raising=False)
    result = CliRunner().invoke(main, ["serve", "--db", str(tmp_path / "x.db"),
                                       "--host", "0.0.0.0"])  # fmt: skip
    assert result.exit_code != 0
    assert "without credentials" in result.output
    assert not (tmp_path / "x.db").exists()


def test_every_setting_is_a_serve_option_and_a_variable():
    """Each Settings field can be set from the command line and from TASKD_*."""
    import dataclasses

    from taskd.cli import serve
    from taskd.config import Settings

    options = {p.name: p for p in serve.params}
    renamed = {"docker_keep_containers": "keep_containers", "allowed_volumes": "allow_volume"}
    missing = []
    for f in dataclasses.fields(Settings):
        if f.name == "hostname":
            continue  # read from the machine
        param = options.get(renamed.get(f.name, f.name))
        if param is None or not (param.envvar or "").startswith("TASKD_"):
            missing.append(f.name)
    assert missing == []
