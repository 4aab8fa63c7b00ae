"""Store faults for tests: a real full disk (a small tmpfs), or refused writes where a real
fault cannot be produced on demand (an I/O error at one chosen write)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from taskd.errors import StoreError


class SmallDisk:
    """A tmpfs of a few MiB to hold a database, and a ballast file that fills it up."""

    def __init__(self, path: Path, size_mb: int = 8) -> None:
        self.path = path
        self.size_mb = size_mb
        self.ballast = path / "ballast"

    def mount(self) -> None:
        if os.geteuid() != 0:
            pytest.skip("mounting a small filesystem needs root")
        self.path.mkdir(parents=True, exist_ok=True)
        # mode=0700: a tmpfs is world-writable by default, and taskd refuses such a directory.
        options = f"size={self.size_mb}m,mode=0700"
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(self.path)], check=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)

    def fill(self, db: Path | None = None) -> None:
        """Fill the disk. With ``db``, first fold its WAL into the file and truncate it, so the
        very next commit needs new space (a WAL with room left would take writes for a while)."""
        if db is not None:
            conn = sqlite3.connect(str(db), timeout=30)
            try:
                conn.execute("PRAGMA busy_timeout=30000")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()
        try:
            with open(self.ballast, "ab", buffering=0) as f:
                for size in (65536, 512):  # big blocks, then the leftovers: nothing must fit
                    with contextlib.suppress(OSError):
                        while True:
                            f.write(b"\0" * size)
        except OSError as exc:  # not even room for the ballast's name: full already
            if exc.errno != errno.ENOSPC:
                raise

    def free(self) -> None:
        self.ballast.unlink(missing_ok=True)


@contextlib.contextmanager
def small_disk(path: Path, size_mb: int = 8) -> Iterator[SmallDisk]:
    disk = SmallDisk(path, size_mb)
    disk.mount()
    try:
        yield disk
    finally:
        disk.unmount()


class RefusedWrites:
    """Make the store refuse the writes ``match`` picks, ``times`` times, like an I/O error."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._real = store.write
        self.match: Callable[[Any, tuple[Any, ...]], bool] | None = None
        self.times = 0
        self.refused = 0
        store.write = self.write

    def refuse(self, match: Callable[[Any, tuple[Any, ...]], bool], times: int = 1) -> None:
        self.match, self.times = match, times

    def write(self, fn: Any, *args: Any) -> asyncio.Future[Any]:
        if self.match is not None and self.times > 0 and self.match(fn, args):
            self.times -= 1
            self.refused += 1
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            fut.set_exception(StoreError("disk I/O error"))
            return fut
        return self._real(fn, *args)
