"""``Idempotency-Key`` on creates: a retried request gets the first answer and creates nothing.

A client whose reply was lost (a dropped connection, a crash of taskd) cannot tell whether its
submit happened; with a key it simply sends the same request again. The key is kept per
credential for ``--idempotency-window`` seconds, in the same transaction as what its request
created, so no crash can leave a create without its key or a key without its create. A key
sent again with a different request is refused (422); one whose first request is still being
handled gets 409.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from taskd.errors import BadRequest, Conflict, TaskdError
from taskd.http.jsonio import JSON
from taskd.http.keys import SERVICES
from taskd.http.serving import credential_of
from taskd.log import get_logger
from taskd.models import now_ns
from taskd.store import idempotency as iq
from taskd.store.db import WRITE_HOOK

log = get_logger("taskd.api")

HEADER = "Idempotency-Key"
PRUNE_EVERY = 3600.0  # seconds between sweeps of keys past the window


class KeyReused(TaskdError):
    status = 422
    code = "idempotency_key_reused"


@dataclass(frozen=True)
class Creates:
    """The store writes that make a route's object, and its answer as they commit it.

    ``answer(db, args, result)`` gets the transaction, the write's arguments and its return
    value, and gives the reply the handler will send (status, JSON body); it is stored with the
    key in the same transaction, so even a crash right after the commit leaves the answer to
    replay.
    """

    writes: tuple[Callable[..., Any], ...]
    answer: Callable[[Any, tuple[Any, ...], Any], tuple[int, Any]]


@dataclass
class Claim:
    """One keyed request being handled: what its create's transaction must also store."""

    scope: str
    key: str
    fingerprint: str
    at: int
    since: int
    creates: Creates
    attached: bool = False
    stored_answer: tuple[int, bytes] | None = field(default=None)

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        if self.attached or getattr(fn, "__func__", fn) not in self.creates.writes:
            return fn
        self.attached = True

        def with_key(db: Any, *args: Any) -> Any:
            result = fn(db, *args)
            status, body = self.creates.answer(db, args, result)
            encoded = b"" if body is None else orjson.dumps(body)
            iq.claim(db, self.scope, self.key, self.fingerprint, self.at, self.since,
                     (status, JSON if body is not None else "", encoded))  # fmt: skip
            self.stored_answer = (status, encoded)
            return result

        return with_key


def check_key(key: str) -> str:
    if not 1 <= len(key) <= 255 or not key.isascii() or not key.isprintable():
        raise BadRequest(f"{HEADER} must be 1 to 255 printable ASCII characters")
    return key


def replay(row: iq.KeyRow, fingerprint: str, key: str) -> web.Response:
    if row.fingerprint != fingerprint:
        raise KeyReused(f"this {HEADER} was already used with a different request; use a new key")
    if row.status is None:
        raise Conflict(f"a request with this {HEADER} is still being handled; retry shortly")
    headers = {HEADER: key, "Idempotent-Replayed": "true"}
    if row.status == 204 or not row.body:
        return web.Response(status=row.status, headers=headers)
    return web.Response(status=row.status, body=row.body, headers=headers,
                        content_type=(row.content_type or JSON).split(";")[0])  # fmt: skip


def idempotent(creates: Creates) -> Callable[[Callable[..., Awaitable[web.StreamResponse]]], Any]:
    """Honour ``Idempotency-Key`` on a create handler (below ``@access``, above the function)."""

    def decorate(handler: Callable[..., Awaitable[web.StreamResponse]]) -> Any:
        @functools.wraps(handler)
        async def keyed(request: web.Request) -> web.StreamResponse:
            raw_key = request.headers.get(HEADER)
            if raw_key is None:
                return await handler(request)
            key = check_key(raw_key)
            svc = request.app[SERVICES]
            body = await request.read()
            fingerprint = hashlib.sha256(
                b"\0".join([request.method.encode(), request.path_qs.encode(), body])
            ).hexdigest()
            scope = credential_of(request)
            at = now_ns()
            since = at - int(svc.settings.idempotency_window * 1e9)
            found = await svc.store.read(iq.lookup, scope, key, since)
            if found is not None:
                return replay(found, fingerprint, key)
            claim = Claim(scope, key, fingerprint, at, since, creates)
            token = WRITE_HOOK.set(claim.wrap)
            try:
                response = await handler(request)
            except iq.KeyTaken:  # the same key, sent twice at once: the first one created
                found = await svc.store.read(iq.lookup, scope, key, since)
                if found is None:
                    raise
                return replay(found, fingerprint, key)
            finally:
                WRITE_HOOK.reset(token)
            if claim.attached and isinstance(response, web.Response):
                sent = (response.status, response.body if isinstance(response.body, bytes) else b"")
                if sent != claim.stored_answer:
                    # Only the crash window replays the answer made in the transaction; when
                    # the handler answered differently, what it sent is what a retry gets.
                    if claim.stored_answer is not None:
                        log.warning(
                            "idempotent answer differs from the handler's", path=request.path
                        )
                    await svc.store.write(iq.answer, scope, key, sent[0],
                                          response.content_type, sent[1])  # fmt: skip
            response.headers[HEADER] = key
            return response

        keyed.taskd_idempotent = True  # type: ignore[attr-defined]  # the OpenAPI says so
        return keyed

    return decorate


async def prune_keys(app: web.Application) -> AsyncIterator[None]:
    """Forget keys past the window, hourly, for as long as the app runs."""

    async def sweep() -> None:
        while True:
            svc = app[SERVICES]
            cutoff = now_ns() - int(svc.settings.idempotency_window * 1e9)
            try:
                gone = await svc.store.write(iq.prune, cutoff)
                if gone:
                    log.info("forgot idempotency keys", keys=gone)
            except TaskdError:
                log.exception("pruning idempotency keys failed")
            await asyncio.sleep(PRUNE_EVERY)

    task = asyncio.get_running_loop().create_task(sweep(), name="taskd-idempotency-prune")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(prune_keys)
