"""The SQLite file: one writer thread with group commit, a small pool of reader threads.

Every query is a plain function ``fn(conn, *args)`` kept in a module of this package. The
engine and the handlers never hold a connection; they call ``await store.write(fn, ...)`` or
``await store.read(fn, ...)``.

Why not one aiosqlite connection: aiosqlite moves every *statement* to its thread, so a
transaction of ten statements costs ten thread hops, and it has no public way to run a whole
function there. Here a whole transaction is one hop, and writes that arrive while the writer is
busy are committed together in the next transaction (group commit): one fsync acknowledges many
changes, which is what makes durable commits cheap under load. Each write of a batch still runs
in its own SAVEPOINT, so one failing write never takes its neighbours down with it.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

from taskd.errors import Conflict, StoreError
from taskd.log import get_logger
from taskd.store.migrations import migrate

T = TypeVar("T")

log = get_logger("taskd.store")

# Set while a request with an Idempotency-Key is handled (see taskd.http.idempotency): it may
# wrap the write that creates, so the key is stored in the same transaction as what it made.
WRITE_HOOK: ContextVar[Callable[[Callable[..., Any]], Callable[..., Any]] | None] = ContextVar(
    "taskd_write_hook", default=None
)

# How many queued writes one transaction takes at most: big enough to amortise the fsync,
# small enough that no single transaction holds the write lock for long.
MAX_BATCH = 2000
# A transaction holding the write lock longer than this is logged: it delays every other write.
SLOW_WRITE = 0.1


SIDE_FILES = ("", "-wal", "-shm", "-journal")


def check_location(path: str | Path) -> None:
    """Refuse a database in a directory other users may write to.

    Whoever can write to the directory can replace the database, or create its ``-wal`` file
    before taskd does and so read every change; a sticky bit does not prevent the latter.
    """
    directory = Path(path).absolute().parent
    try:
        mode = directory.stat().st_mode
    except FileNotFoundError:
        return  # taskd creates it, for its user only
    if mode & 0o002:
        raise StoreError(
            f"refusing to keep the database in {directory}: other users may write there. "
            "Use a directory only taskd's user can write to."
        )


def secure_files(path: str | Path) -> None:
    """Create the database (and its directory) for taskd's user only; tighten older files.

    SQLite creates the ``-wal`` and ``-shm`` files with the database file's permissions, so a
    0600 database keeps them 0600 too. Files an older taskd made readable by others are
    narrowed here; they hold work queue project secrets and task tokens' hashes.
    """
    path = Path(path)
    check_location(path)
    path.absolute().parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for suffix in SIDE_FILES:
        side = path.with_name(path.name + suffix)
        try:
            if side.stat().st_mode & 0o077:
                side.chmod(0o600)
        except FileNotFoundError:
            pass
        except PermissionError as exc:
            why = f"{side} is readable by other users and cannot be changed: {exc}"
            raise StoreError(why) from exc


def connect(path: str | Path, *, readonly: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    if readonly:
        conn.execute("PRAGMA query_only=ON")
    else:
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a change is on disk before its client hears about it (SPEC §3).
        conn.execute("PRAGMA synchronous=FULL")
        # Up to 64 MiB of pages (taken only as used; SQLite's default is 2 MiB): a transaction
        # that stores a DAG of 100,000 tasks writes about 60 MiB, and with the default cache
        # its pages are spilled and read back while it runs (about 30 % slower).
        conn.execute("PRAGMA cache_size=-65536")
    return conn


class Store:
    """The one SQLite file of a taskd instance."""

    def __init__(self, path: str | Path, *, readers: int = 2) -> None:
        self.path = Path(path)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="taskd-writer")
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="taskd-reader")
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._wconn: sqlite3.Connection | None = None
        self._pending: list[tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]] = []
        self._flushing = False
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop writes are answered on
        self._drained: asyncio.Future[None] | None = None  # resolved when flushing stops
        self._closed = False
        # Reads and flushes under way, so a drain can wait for the store to be idle.
        self._busy: set[asyncio.Future[Any]] = set()
        self._identity: tuple[int, int] | None = None
        self.lost: str | None = None  # why writes stopped: the file was deleted or replaced

    @classmethod
    async def open(cls, path: str | Path) -> Store:
        """Open (creating if needed) and migrate the database file."""
        store = cls(path)
        loop = asyncio.get_running_loop()
        try:
            store._wconn = await loop.run_in_executor(store._writer, store._open_writer)
        except sqlite3.Error as exc:  # not a database, corrupt, unreadable
            store._writer.shutdown(wait=False)
            store._readers.shutdown(wait=False)
            raise StoreError(f"cannot open database {path}: {exc}") from None
        return store

    def _open_writer(self) -> sqlite3.Connection:
        secure_files(self.path)
        conn = connect(self.path)
        migrate(conn)
        st = os.stat(self.path)
        self._identity = (st.st_dev, st.st_ino)
        return conn

    def _check_file(self) -> None:
        """Refuse to commit when the path no longer names the file this store has open.

        SQLite keeps writing to a deleted (or replaced) file through its open descriptor, so
        every change would be acknowledged and then lost with the unlinked inode.
        """
        if self.lost is None:
            try:
                st = os.stat(self.path)
                same = (st.st_dev, st.st_ino) == self._identity
            except FileNotFoundError:
                same = False
            if not same:
                self.lost = (
                    f"the database file {self.path} was deleted or replaced while taskd ran; "
                    "writes are stopped (restart taskd)"
                )
                log.error("database file gone; refusing writes", db=str(self.path))
        if self.lost is not None:
            raise StoreError(self.lost)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._flushing:
            await self._until_drained()
        loop = asyncio.get_running_loop()
        if self._wconn is not None:
            await loop.run_in_executor(self._writer, self._wconn.close)
        self._readers.shutdown(wait=True)
        for conn in self._reader_conns:
            conn.close()
        self._writer.shutdown(wait=True)

    # -- reads ------------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, readonly=True)
            self._local.conn = conn
            self._reader_conns.append(conn)
        return conn

    def _run_read(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            return fn(conn, *args)
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc
        finally:
            conn.execute("COMMIT")

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in one read transaction on a reader thread."""
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._readers, self._run_read, fn, args)
        self._busy.add(fut)
        fut.add_done_callback(self._busy.discard)
        return await fut

    @property
    def idle(self) -> bool:
        """No read under way and no write queued or being committed."""
        return not self._busy and not self._flushing and not self._pending

    async def until_idle(self) -> None:
        """Wait for the reads and writes under way (not for ones asked for meanwhile)."""
        waits: list[asyncio.Future[Any]] = list(self._busy)
        if self._flushing:
            waits.append(self._until_drained())
        if waits:
            await asyncio.wait(waits)

    def _until_drained(self) -> asyncio.Future[None]:
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()
        return self._drained

    # -- writes -----------------------------------------------------------------------------

    def write(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``fn(conn, *args)`` in a write transaction; the future resolves after COMMIT.

        The write is queued synchronously, so writes commit in the order they were asked for.
        """
        if self._closed:
            raise StoreError("the store is closed")
        hook = WRITE_HOOK.get()
        if hook is not None:  # a request with an Idempotency-Key: its key joins the create
            fn = hook(fn)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._pending.append((fn, args, fut))
        if not self._flushing:
            self._flushing = True
            self._loop = loop
            # Not at once: the writes other callbacks ask for in this turn of the loop join
            # the same transaction (group commit).
            loop.call_soon(self._submit)
        return fut

    # A batch goes to the writer thread, whose last act is to hand the outcomes back to the
    # loop (``_answer``); the loop then sends the next batch, if writes came meanwhile. No
    # task or chained future in between: fewer objects and loop turns on every write's path.

    def _submit(self) -> None:
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        try:
            self._writer.submit(self._commit_and_answer, batch, self._loop)
        except Exception as exc:  # the writer is shut down
            assert self._loop is not None
            self._loop.call_soon(self._answer, batch, None, exc)

    def _commit_and_answer(self, batch: list, loop: asyncio.AbstractEventLoop) -> None:
        """Writer thread: commit ``batch``, then hand its outcomes to the loop."""
        outcomes, failed = None, None
        try:
            outcomes = self._run_batch(batch)
        except BaseException as exc:  # the COMMIT itself failed: nothing in it happened
            failed = exc
        if not loop.is_closed():
            loop.call_soon_threadsafe(self._answer, batch, outcomes, failed)

    def _answer(self, batch: list, outcomes: list | None, failed: BaseException | None) -> None:
        if outcomes is None:
            err = failed if isinstance(failed, StoreError) else StoreError(str(failed))
            outcomes = [(False, err)] * len(batch)
        for (_, _, fut), (ok, value) in zip(batch, outcomes, strict=True):
            if fut.done():
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)
        if self._pending:
            self._submit()
            return
        self._flushing = False
        if self._drained is not None:
            if not self._drained.done():
                self._drained.set_result(None)
            self._drained = None

    def _run_batch(self, batch: list[tuple[Callable[..., Any], tuple[Any, ...], Any]]) -> list:
        conn = self._wconn
        assert conn is not None
        outcomes: list[tuple[bool, Any]] = []
        self._check_file()
        began = time.monotonic()
        slowest, slowest_took = None, 0.0
        # A lone write needs no savepoint of its own: when it fails, the whole transaction is
        # rolled back instead (two statements fewer on every write that came alone).
        alone, rolled_back = len(batch) == 1, False
        conn.execute("BEGIN IMMEDIATE")
        try:
            for fn, args, _ in batch:
                t0 = time.monotonic()
                if not alone:
                    conn.execute("SAVEPOINT w")
                try:
                    value = fn(conn, *args)
                except Exception as exc:
                    if not alone:
                        conn.execute("ROLLBACK TO w")
                        conn.execute("RELEASE w")
                    else:
                        rolled_back = True
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                    outcomes.append((False, translate(exc)))
                else:
                    if not alone:
                        conn.execute("RELEASE w")
                    outcomes.append((True, value))
                took = time.monotonic() - t0
                if took > slowest_took:
                    slowest, slowest_took = fn, took
            if not rolled_back:
                self._check_file()
                conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        held = time.monotonic() - began
        if held > SLOW_WRITE:
            log.warning("slow write held the writer", seconds=round(held, 3), writes=len(batch),
                        slowest=getattr(slowest, "__qualname__", repr(slowest)),
                        slowest_seconds=round(slowest_took, 3))  # fmt: skip
        return outcomes

    # -- maintenance ------------------------------------------------------------------------

    async def backup(self, dest: str | Path) -> None:
        """Write a consistent copy of the live database to ``dest`` (SQLite backup API)."""

        def run(conn: sqlite3.Connection) -> None:
            target = sqlite3.connect(str(dest))
            try:
                conn.backup(target)
            finally:
                target.close()

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._readers, lambda: run(self._reader()))


def lock_path(db: str | Path) -> Path:
    db = Path(db)
    return db.with_name(db.name + ".lock")


class DatabaseInUse(StoreError):
    """Another ``taskd serve`` holds the database."""


class DatabaseLock:
    """An exclusive ``flock`` on ``<db>.lock``, held for the life of one ``taskd serve``.

    Two servers on one file would each take the other's running jobs for lost and run them
    again. The lock is released by the kernel when the process ends, however it ends; the file
    holds the holder's pid so the refusal can name it.
    """

    def __init__(self, db: str | Path) -> None:
        self.db = Path(db)
        self.path = lock_path(db)
        self._fd: int | None = None

    def holder(self) -> int | None:
        """The pid of the server holding the lock (0 if it cannot be read); None when free.

        Creates nothing: a missing lock file means nobody holds it.
        """
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _read_pid(fd)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise DatabaseInUse(in_use_message(self.db, pid)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None


def in_use_message(db: Path, pid: int | None) -> str:
    who = f"pid {pid}" if pid else "pid unknown"
    return f"database {db} is in use by another taskd serve ({who})"


def _read_pid(fd: int) -> int:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0)
    except (ValueError, OSError):
        return 0


def translate(exc: BaseException) -> BaseException:
    """Driver errors become taskd errors here, once."""
    if isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc):
        return Conflict(str(exc))
    if isinstance(exc, sqlite3.Error):
        return StoreError(str(exc))
    return exc
