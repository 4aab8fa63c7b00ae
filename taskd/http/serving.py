"""Serving the app on a socket, with limits an unauthenticated client cannot get around.

aiohttp's own ``run_app`` leaves two gaps a hostile client on the network can use:

* a connection that never finishes its request head (slowloris) holds a file descriptor for as
  long as the keep-alive timeout, and
* nothing caps open connections, so enough half-sent requests exhaust the process's file
  descriptors; ``accept`` then fails and even ``/ready`` stops answering.

Here the keep-alive timer, which aiohttp starts when a connection opens and which only a
complete request head stops, is the header timeout. Connections are counted as they are
accepted; at the cap, the connection that has waited longest without a request in progress
(half-sent or idle) is dropped to make room, so a flood of half-sent requests only ever
displaces itself and a real client's new connection gets in. Only when every connection is busy
with a request is a new one refused, with a 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import resource
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterator

import orjson
from aiohttp import web
from aiohttp.web_runner import GracefulExit

from taskd.config import Settings
from taskd.errors import RateLimited, TaskdError, Unavailable
from taskd.log import get_logger

log = get_logger("taskd.http")

# File descriptors kept for everything but client connections: the database and its WAL,
# Docker's socket, pipes of local jobs, the listening socket, and the connections one wake-up
# of the listening socket may accept (its backlog) before the cap sees them.
BACKLOG = 512
SWITCH_INTERVAL = 0.001
FD_RESERVE = 256 + BACKLOG
FD_CEILING = 65536
REPORT_EVERY = 10.0  # seconds between log lines about connections dropped at the cap


def raise_fd_limit() -> int:
    """Lift the soft limit on open files toward the hard one; return the limit in force.

    Not beyond FD_CEILING: local jobs inherit the limit, and some programs walk every possible
    descriptor at start.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = FD_CEILING if hard == resource.RLIM_INFINITY else min(hard, FD_CEILING)
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return soft


def connection_cap(wanted: int, fd_limit: int) -> int:
    """The connection cap: what was asked for, but always below the file descriptor limit."""
    return max(1, min(wanted, fd_limit - FD_RESERVE))


class Refusal(asyncio.Protocol):
    """Answers a connection over the cap with a 503 and closes it.

    What the client sent is read and dropped, briefly: closing a socket with unread data makes
    the kernel reset it, and the client would never see the answer. Few refusals linger at once;
    beyond that, a connection is closed at once.
    """

    BODY = orjson.dumps(
        {"code": "unavailable", "message": "too many open connections; try again shortly"}
    )
    REPLY = (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        b"Retry-After: 1\r\nConnection: close\r\n"
        b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
    )
    LINGER = 0.5  # seconds a refused client has to read the answer
    MAX_LINGERING = 256
    lingering = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.REPLY)
        if Refusal.lingering >= self.MAX_LINGERING:
            transport.close()
            self.timer: asyncio.TimerHandle | None = None
            return
        Refusal.lingering += 1
        transport.write_eof()
        self.timer = asyncio.get_running_loop().call_later(self.LINGER, transport.abort)

    def data_received(self, data: bytes) -> None:
        pass  # read and dropped

    def eof_received(self) -> bool:
        return False  # the client is done too: close

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            Refusal.lingering -= 1


class ConnectionGuard:
    """Counts connections, knows which are busy with a request, and keeps them under a cap."""

    def __init__(self, cap: int) -> None:
        self.factory: Callable[[], asyncio.Protocol] | None = None  # set when serving starts
        self.cap = cap
        # protocol -> monotonic time it last became idle (accepted, or finished a request);
        # dict order is that order, so the first idle entry is the one waiting longest.
        self.idle: dict[asyncio.BaseProtocol, float] = {}
        self.busy: set[asyncio.BaseProtocol] = set()
        self.evicted = 0
        self.refused = 0
        self._swept = 0.0
        self._reported = (0.0, 0, 0)  # when, and the counts then

    def _count(self) -> int:
        return len(self.idle) + len(self.busy)

    def _sweep(self) -> None:
        # Closed connections are forgotten lazily: at the cap, at most twice a second.
        now = time.monotonic()
        if now - self._swept < 0.5:
            return
        self._swept = now
        for proto in [p for p in self.idle if closed(p)]:
            del self.idle[proto]

    def __call__(self) -> asyncio.Protocol:
        assert self.factory is not None
        if self._count() >= self.cap:
            self._sweep()
        while self._count() >= self.cap and self.idle:
            proto = next(iter(self.idle))
            del self.idle[proto]
            transport = getattr(proto, "transport", None)
            if transport is not None and not transport.is_closing():
                transport.abort()  # frees its descriptor now, without a goodbye
                self.evicted += 1
        if self._count() >= self.cap:
            self.refused += 1
            self._report()
            return Refusal()
        if self.evicted != self._reported[1]:
            self._report()
        proto = self.factory()
        self.idle[proto] = time.monotonic()
        return proto

    def _report(self) -> None:
        # An operator should hear of a flood, but not once per connection of it.
        now = time.monotonic()
        when, evicted, refused = self._reported
        if now - when < REPORT_EVERY:
            return
        self._reported = (now, self.evicted, self.refused)
        log.warning(
            "connection cap reached",
            cap=self.cap,
            dropped_waiting=self.evicted - evicted,
            refused=self.refused - refused,
        )

    def started(self, proto: asyncio.BaseProtocol) -> None:
        """A whole request arrived on ``proto``: it is no longer a candidate for eviction."""
        self.idle.pop(proto, None)
        self.busy.add(proto)

    def finished(self, proto: asyncio.BaseProtocol) -> None:
        """The request on ``proto`` was handled; the connection waits for its next one."""
        if proto in self.busy:
            self.busy.discard(proto)
            if not closed(proto):
                self.idle[proto] = time.monotonic()


def closed(proto: asyncio.BaseProtocol) -> bool:
    transport = getattr(proto, "transport", None)
    return transport is None or transport.is_closing()


class StreamSlots:
    """Bounds long-lived streams (log follows): in total, and per credential.

    Each open follow holds a connection, a buffer and a wake-up event; without a bound one
    client can open thousands and slow everyone down.
    """

    def __init__(self, total: int, per_credential: int) -> None:
        self.total = total
        self.per_credential = per_credential
        self.open: dict[str, int] = {}
        self.count = 0

    @contextlib.contextmanager
    def hold(self, credential: str) -> Iterator[None]:
        """One slot for ``credential`` while the block runs; 429 or 503 when there is none."""
        mine = self.open.get(credential, 0)
        if mine >= self.per_credential:
            raise RateLimited(
                f"too many log streams are open for these credentials (at most "
                f"{self.per_credential}); close one first",
                retry_after=1,
            )
        if self.count >= self.total:
            raise Unavailable(
                f"too many log streams are open (at most {self.total}); try again shortly",
                retry_after=1,
            )
        self.open[credential] = mine + 1
        self.count += 1
        try:
            yield
        finally:
            self.count -= 1
            left = self.open[credential] - 1
            if left:
                self.open[credential] = left
            else:
                del self.open[credential]


def credential_of(request: web.Request) -> str:
    """A name for the caller's credential that is no secret: a hash of what it presented."""
    presented = "\0".join(
        request.headers.get(h, "") for h in ("Authorization", "X-Worker-ID", "X-Secret")
    )
    return hashlib.sha256(presented.encode()).hexdigest()


FOLLOWS: web.AppKey[StreamSlots] = web.AppKey("follow_slots", StreamSlots)
GUARD: web.AppKey[ConnectionGuard] = web.AppKey("connection_guard", ConnectionGuard)
SETTINGS: web.AppKey[Settings] = web.AppKey("serving_settings", Settings)


@web.middleware
async def busy_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Puts a connection back among the evictable ones when its request has been handled."""
    try:
        return await handler(request)
    finally:
        request.app[GUARD].finished(request.protocol)


@web.middleware
async def body_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Reads an authorised request's body within the body timeout, before its handler runs.

    The head already had the header timeout; this bounds the body, so a client trickling one
    cannot hold a handler open for ever. The body is cached for the handler to use. Only then
    is the connection busy (safe from eviction at the cap): a connection still sending its
    body, like one still sending its head, may be dropped to let a new client in.
    """
    guard = request.app[GUARD]
    if not request.body_exists or request.method in ("GET", "HEAD"):
        guard.started(request.protocol)
        return await handler(request)
    timeout = request.app[SETTINGS].body_timeout
    too_slow = "the request body did not arrive within {:g} seconds"
    if request.content_type == "multipart/form-data":
        # A multipart body is parsed from the stream (it cannot be read ahead); its one reader,
        # Drove's task search, changes nothing, so the whole request gets the body timeout.
        guard.started(request.protocol)
        try:
            async with asyncio.timeout(timeout):
                return await handler(request)
        except TimeoutError:
            raise RequestTimeout(too_slow.format(timeout)) from None
    if request.content.is_eof():
        await request.read()  # it all came with the head: nothing to wait for, no timer
    else:
        try:
            async with asyncio.timeout(timeout):
                await request.read()
        except TimeoutError:
            raise RequestTimeout(too_slow.format(timeout)) from None
    guard.started(request.protocol)
    return await handler(request)


class RequestTimeout(TaskdError):
    status = 408
    code = "request_timeout"


class GuardedSite(web.BaseSite):
    """A listening socket whose connections go through a ConnectionGuard."""

    def __init__(self, runner: web.AppRunner, guard: ConnectionGuard, sock: socket.socket) -> None:
        super().__init__(runner, backlog=BACKLOG)
        self.guard = guard
        self._sock = sock

    @property
    def name(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self.guard.factory = server
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self.guard, sock=self._sock, backlog=BACKLOG)


def install(app: web.Application, settings: Settings) -> None:
    """What the middlewares here need: the settings, and a guard for the connections."""
    app[SETTINGS] = settings
    app[GUARD] = ConnectionGuard(settings.max_connections)
    app[FOLLOWS] = StreamSlots(settings.max_follows, settings.max_follows_per_credential)


def serve(
    app: web.Application,
    settings: Settings,
    sockets: list[socket.socket],
    started: Callable[[], None] | None = None,
) -> None:
    """Run the app on ``sockets`` until SIGTERM/SIGINT, as ``web.run_app`` does, behind the
    connection guard; ``started`` is called once it listens."""
    guard = app[GUARD]
    guard.cap = connection_cap(settings.max_connections, raise_fd_limit())
    # Work moved to threads (large DAG expansions) still holds the GIL; the loop waits up to
    # the switch interval each time it wants it back. 1 ms instead of 5 keeps replies prompt.
    sys.setswitchinterval(SWITCH_INTERVAL)
    loop = asyncio.new_event_loop()

    async def main() -> None:
        runner = web.AppRunner(
            app, handle_signals=True, access_log=None, shutdown_timeout=2.0,
            keepalive_timeout=settings.header_timeout,
        )  # fmt: skip
        await runner.setup()
        try:
            for sock in sockets:
                await GuardedSite(runner, guard, sock).start()
            log.info("listening", url=settings.url, max_connections=guard.cap)
            if started is not None:
                started()
            await asyncio.Event().wait()  # until SIGTERM/SIGINT raise GracefulExit
        finally:
            await runner.cleanup()

    task = loop.create_task(main())
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(task)
    except (GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(task)
        finally:
            pending = asyncio.all_tasks(loop)
            for t in pending:
                t.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
