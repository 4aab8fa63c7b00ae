"""What ``taskd serve`` checks before it creates, prints or listens on anything.

Each refusal is one line for the operator (``StartupError``), raised before the admin token is
generated or any file is made, so a failed start leaves the directory as it found it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from taskd.config import Settings
from taskd.store.db import DatabaseInUse, DatabaseLock, in_use_message
from taskd.store.migrations import migrations

SQLITE_MAGIC = b"SQLite format 3\x00"


class StartupError(Exception):
    """Why taskd cannot start, in one line."""


@dataclass
class Prepared:
    """What the checks took hold of: the database lock and the listening sockets."""

    lock: DatabaseLock
    sockets: list[socket.socket] = field(default_factory=list)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.lock.release()


def prepare(settings: Settings) -> Prepared:
    """Check everything that can stop a start, then take the port and the database lock."""
    db = settings.db
    check_directory(db)
    check_database(db)
    lock = DatabaseLock(db)
    pid = lock.holder()
    if pid is not None:  # say who holds it before touching the port they may also hold
        raise StartupError(in_use_message(db, pid))
    sockets = bind(settings.host, settings.port)
    try:
        lock.acquire()
    except DatabaseInUse as exc:
        for sock in sockets:
            sock.close()
        raise StartupError(str(exc)) from None
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise StartupError(f"cannot lock database {db}: {exc.strerror}") from None
    return Prepared(lock, sockets)


def check_directory(db: Path) -> None:
    parent = db.parent if str(db.parent) else Path(".")
    if not parent.is_dir():
        raise StartupError(f"directory {parent} of database {db} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StartupError(f"directory {parent} of database {db} is not writable")
    if db.exists() and not os.access(db, os.R_OK | os.W_OK):
        raise StartupError(f"database {db} is not readable and writable")
    if db.exists() and not db.is_file():
        raise StartupError(f"database {db} is not a file")


def check_database(db: Path) -> None:
    """An existing file must be SQLite, at a schema version this code knows."""
    try:
        with db.open("rb") as f:
            header = f.read(100)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StartupError(f"cannot read database {db}: {exc.strerror}") from None
    if not header:
        return  # an empty file is a new database to SQLite
    if not header.startswith(SQLITE_MAGIC):
        raise StartupError(f"{db} is not a SQLite database")
    # PRAGMA user_version lives at byte 60 of the header; the migrations keep it.
    version = int.from_bytes(header[60:64], "big") if len(header) >= 64 else 0
    known = migrations()
    newest = known[-1][0] if known else 0
    if version > newest:
        raise StartupError(
            f"database {db} is at schema version {version}, newer than this taskd "
            f"(which knows up to {newest}); upgrade taskd"
        )


def bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for every address ``host`` names (as aiohttp would make them)."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise StartupError(f"cannot resolve host {host}: {exc.strerror}") from None
    sockets: list[socket.socket] = []
    seen = set()
    try:
        for family, kind, proto, _, addr in infos:
            if (family, addr[:2]) in seen:
                continue
            seen.add((family, addr[:2]))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(addr)
            except OSError as exc:
                hint = " (is another server using it?)" if exc.errno == errno.EADDRINUSE else ""
                why = f"cannot listen on {host}:{port}: {exc.strerror}{hint}"
                raise StartupError(why) from None
            sock.listen(128)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets
