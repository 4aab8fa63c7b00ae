"""The supervisor of local jobs: nothing a job starts outlives the job's attempt.

taskd runs this file once, as its own small process (``python -I -S supervise.py FD``; it
imports nothing but the standard library, so it starts without loading taskd). Over the
socket ``FD`` taskd sends one request per attempt, with the write ends of the job's stdout,
stderr and status pipes attached. Each request goes to a *shim* (forked one request ahead,
so a start does not wait for the fork), which:

- becomes a child subreaper, so every process the job starts stays below it, even one that
  double-forks or calls ``setsid`` (an orphan is re-parented to the shim, not to init);
- starts the job's main process (its own session, optionally as another user) and reports
  ``started <shim pid> <main pid>`` on the status pipe, or ``error <why>`` if it could not;
- forwards SIGTERM to every descendant, and on SIGUSR1 kills every descendant;
- when the main process exits, kills whatever descendants are left, reaps them all, and only
  then reports ``exit <returncode>`` (negative: the signal that ended the main process).

A shim does not die with taskd: a restarted taskd finds the shim of a lost attempt by its pid
and start time and kills it and its descendants before the attempt is retried.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
from array import array

PR_SET_CHILD_SUBREAPER = 36
HEADER = struct.Struct("!I")
LIBC = ctypes.CDLL(None, use_errno=True)  # once, not in every shim
TEARDOWN_LIMIT = 30.0  # seconds; a process stuck in the kernel cannot hold a report forever


def proc_table() -> dict[int, tuple[int, str]]:
    """Every process on the host: pid -> (parent pid, state letter)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:  # ended meanwhile
            continue
        # The command name may contain spaces and parentheses: split after the last ')'.
        fields = stat.rsplit(b")", 1)[-1].split()
        table[int(entry)] = (int(fields[1]), fields[0].decode())
    return table


def descendants(root: int, table: dict[int, tuple[int, str]] | None = None) -> list[int]:
    """The living descendants of ``root`` (zombies left out: they can do nothing more)."""
    table = proc_table() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            todo.append(child)
            if table[child][1] not in "ZX":
                found.append(child)
    return found


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


# -- one job ----------------------------------------------------------------------------------


def exec_main(req: dict, fds: list[int], home: str | None, errw: int) -> None:
    """In the forked main process: set it up as the job asked, then exec. Never returns."""
    argv = req["argv"]
    doing = f"{argv[0]!r}"
    try:
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)  # ignored signals would survive exec
        os.setsid()  # its own session and group, as a local job always had
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        env = dict(req["env"])
        user = req.get("user")
        if user:
            doing = f"as user {user['name']!r}"
            env.update(HOME=home, USER=user["name"], LOGNAME=user["name"])
            os.setgroups(user["groups"])
            os.setgid(user["gid"])
            os.setuid(user["uid"])
        cwd = req.get("cwd")
        if not cwd and home and not os.access(".", os.R_OK | os.X_OK):
            cwd = home  # taskd's own directory is closed to this user: start at home
        if cwd:
            doing = f"in {cwd!r}"
            os.chdir(cwd)  # as the job's user: it must be allowed there itself
        doing = f"{argv[0]!r}"
        os.execvpe(argv[0], argv, env)
    except BaseException as exc:  # whatever it was, the shim must hear of it
        with contextlib.suppress(BaseException):
            os.write(errw, f"{doing}: {exc}".encode(errors="replace"))
    finally:
        os._exit(127)


def spawn_plain(req: dict, fds: list[int]) -> int | None:
    """Start the main process of a job with no user or directory of its own; None if it fails.

    posix_spawn does not copy the shim's memory as fork does, so it is about twice as fast;
    it sets up what ``exec_main`` does for such a job (own session, default signals, the
    pipes on 1 and 2). On any failure the caller takes the fork path, which reports the
    error as it always has.
    """
    argv, env = req["argv"], req["env"]
    path = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=env.get("PATH", os.defpath))
    if not path:
        return None
    try:
        return os.posix_spawn(
            path, argv, env, setsid=True,
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, fds[0], 1),
                (os.POSIX_SPAWN_DUP2, fds[1], 2),
            ],
        )  # fmt: skip
    except OSError:
        return None


def run_shim(req: dict, fds: list[int]) -> None:
    """The shim of one attempt (a forked child of the supervisor). Never returns."""
    status = fds[2]
    me = os.getpid()
    for fd in fds:
        os.set_inheritable(fd, False)  # the main process gets copies on 1 and 2, no more

    def report(line: str) -> None:
        with contextlib.suppress(OSError):  # taskd may be gone; the job still ends cleanly
            os.write(status, line.encode() + b"\n")

    home = None
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the supervisor lets the kernel reap
        os.setsid()  # away from the supervisor's group: a signal to it does not reach jobs
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)  # the shim prints nothing; nor does it hold taskd's log open
        if LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")
        user = req.get("user")
        if user:
            # A private, empty home: the user's own may not exist (nobody's does not).
            home = tempfile.mkdtemp(prefix="taskd-job-")
            os.chown(home, user["uid"], user["gid"])
        main = None if user or req.get("cwd") else spawn_plain(req, fds)
        if main is None:
            errr, errw = os.pipe()  # close-on-exec: EOF means the exec worked
            main = os.fork()
            if main == 0:
                exec_main(req, fds, home, errw)
            os.close(errw)
            error = b""
            while chunk := os.read(errr, 4096):
                error += chunk
            os.close(errr)
            if error:
                os.waitpid(main, 0)
                report("error cannot start " + error.decode(errors="replace").replace("\n", " "))
                return
        signal.signal(signal.SIGTERM, lambda *_: signal_all(descendants(me), signal.SIGTERM))
        signal.signal(signal.SIGUSR1, lambda *_: signal_all(descendants(me), signal.SIGKILL))
        report(f"started {me} {main}")
        code = wait_for_main(main)
        teardown()
        report(f"exit {code}")
    except BaseException as exc:
        report(f"error the job's supervisor failed: {exc}")
        with contextlib.suppress(BaseException):
            teardown()
    finally:
        if home:
            shutil.rmtree(home, ignore_errors=True)
        os._exit(0)


def wait_for_main(main: int) -> int:
    """Reap children (orphans are re-parented here) until the main process ends."""
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == main:
            return os.waitstatus_to_exitcode(status)


def teardown() -> None:
    """Kill every descendant and reap them all; returns once the shim has no child left."""
    me = os.getpid()
    deadline = time.monotonic() + TEARDOWN_LIMIT
    while time.monotonic() < deadline:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                # No child at all: as a subreaper, the shim then has no descendant either
                # (each living descendant's chain of parents leads back to the shim).
                return
            if pid == 0:
                break
        signal_all(descendants(me), signal.SIGKILL)
        time.sleep(0.005)


# -- the supervisor ---------------------------------------------------------------------------


def receive(sock: socket.socket) -> tuple[dict, list[int]] | None:
    """One request and its descriptors; None once taskd has closed its end."""
    head, fds = b"", []
    while len(head) < HEADER.size:
        data, ancdata, _, _ = sock.recvmsg(HEADER.size - len(head), socket.CMSG_SPACE(16))
        if not data:
            return None
        head += data
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(payload) - len(payload) % 4
                fds += list(struct.unpack(f"{usable // 4}i", payload[:usable]))
    (size,) = HEADER.unpack(head)
    body = bytearray()
    while len(body) < size:
        chunk = sock.recv(size - len(body))
        if not chunk:
            return None
        body += chunk
    return json.loads(body), fds


def fork_spare(sock: socket.socket) -> socket.socket | None:
    """A shim forked before its request comes, so an attempt's start does not wait for a fork.

    It waits on its own socket for one request; at EOF (the supervisor ended) it exits.
    Returns the supervisor's end of that socket, or None if it could not fork.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        pid = os.fork()
    except OSError:
        ours.close()
        theirs.close()
        return None
    if pid == 0:
        try:
            sock.close()  # only taskd and the supervisor may hold the request socket
            ours.close()
            got = receive(theirs)
            theirs.close()
        except BaseException:
            os._exit(0)
        if got is None or len(got[1]) != 3:
            os._exit(0)
        run_shim(*got)
    theirs.close()
    return ours


def hand_over(spare: socket.socket, req: dict, fds: list[int]) -> bool:
    """Pass a request to a spare shim; False if it is gone (then fork one as before)."""
    data = json.dumps(req).encode()
    frame = HEADER.pack(len(data)) + data
    try:
        sent = spare.sendmsg([frame], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array("i", fds))])
        if sent < len(frame):
            spare.sendall(frame[sent:])
        return True
    except OSError:
        return False
    finally:
        spare.close()


def serve(sock: socket.socket) -> None:
    """Give each request to a shim until taskd goes away."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # shims are reaped by the kernel
    spare = fork_spare(sock)
    while (got := receive(sock)) is not None:
        req, fds = got
        if len(fds) != 3:
            for fd in fds:
                os.close(fd)
            continue
        if (spare is None or not hand_over(spare, req, fds)) and os.fork() == 0:
            sock.close()
            run_shim(req, fds)
        for fd in fds:
            os.close(fd)
        # The next shim is forked now, while this one starts its job (not on the next start).
        spare = fork_spare(sock)


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])))
