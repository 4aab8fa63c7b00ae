"""The delivery worker: sends due outbox messages, retries with backoff, never polls.

It sleeps until the earliest retry time or until the engine commits new messages (a run's
end wakes it). A message is marked delivered only after the receiver accepted it, so a crash
between the two sends it again with the same idempotency key.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp
import orjson

from taskd.log import get_logger
from taskd.notify import channels
from taskd.secrets import MASKER
from taskd.store import Store
from taskd.store import notifications as q

log = get_logger("taskd.notify")

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 300.0
MAX_TRIES = 60  # about four hours at the longest delay, then it is given up (visible)


def backoff(tries: int) -> float:
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, tries - 1))


class Notifier:
    """Delivers the outbox of one server."""

    def __init__(self, store: Store, opts: Any, instance: str, secrets: dict[str, str]) -> None:
        self.store = store
        self.opts = opts
        self.instance = instance
        self.secrets = secrets  # named secrets: webhook signing keys
        self.wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None

    def key(self, outbox_id: int) -> str:
        return f"taskd-{self.instance}-{outbox_id}"

    async def loop(self) -> None:
        """Run until cancelled (under the supervisor)."""
        self._session = aiohttp.ClientSession()
        try:
            while True:
                self.wake.clear()
                now = time.time_ns()
                rows = await self.store.read(q.due, now)
                if rows:
                    await asyncio.gather(*(self.deliver(r) for r in rows))
                    continue
                nxt = await self.store.read(q.next_due)
                timeout = None if nxt is None else max(0.0, (nxt - time.time_ns()) / 1e9)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout)
        finally:
            await self._session.close()

    async def deliver(self, row: Any) -> None:
        cfg, payload = orjson.loads(row["target"]), orjson.loads(row["payload"])
        key = self.key(row["id"])
        try:
            await self.send(row["channel"], key, cfg, row["event"], payload)
        except Exception as exc:
            error = MASKER.mask_text(f"{type(exc).__name__}: {exc}")
            tries = row["tries"] + 1
            give_up = isinstance(exc, channels.Permanent) or tries >= MAX_TRIES
            nxt = None if give_up else time.time_ns() + int(backoff(tries) * 1e9)
            log.warning("notification not delivered", id=row["id"], channel=row["channel"],
                        definition=row["definition"], error=error, given_up=give_up)  # fmt: skip
            await self.store.write(q.failed, row["id"], error, nxt)
            return
        await self.store.write(q.delivered, row["id"], time.time_ns())

    def resolve(self, cfg: dict[str, Any]) -> dict[str, Any]:
        """The channel's settings with ``{"secret": NAME}`` values opened."""
        out = dict(cfg)
        for k, v in cfg.items():
            if isinstance(v, dict) and "secret" in v:
                if v["secret"] not in self.secrets:  # may be created later: keep trying
                    raise RuntimeError(
                        f"{k} refers to secret {v['secret']!r}, which does not exist"
                    )
                out[k] = self.secrets[v["secret"]]
        return out

    async def send(self, channel: str, key: str, cfg: dict[str, Any], event: str,
                   payload: dict[str, Any]) -> None:  # fmt: skip
        assert self._session is not None
        cfg = self.resolve(cfg)
        if channel == "email":
            await channels.send_email(self.opts, key, cfg, event, payload)
        elif channel == "pagerduty":
            await channels.send_pagerduty(self._session, self.opts, key, cfg, event, payload)
        elif channel == "webhook":
            secret = None
            if cfg.get("secret"):
                secret = self.secrets.get(cfg["secret"])
                if secret is None:  # may be created later: keep trying
                    raise RuntimeError(f"the signing secret {cfg['secret']!r} does not exist")
            await channels.send_webhook(self._session, key, cfg, event, payload, secret)
        elif channel == "slack":
            await channels.send_slack(self._session, key, cfg, event, payload)
        else:
            raise channels.Permanent(f"unknown channel {channel!r}")
