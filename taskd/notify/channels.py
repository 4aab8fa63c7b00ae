"""Sending one outbox message: e-mail (SMTP), PagerDuty Events v2, signed webhooks, Slack.

Every message carries its idempotency key (``taskd-<instance>-<outbox id>``): a message sent
again after a crash has the same key, so a receiver can drop the copy.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from email.message import EmailMessage
from typing import Any

import aiohttp
import aiosmtplib
import orjson

TIMEOUT = 10.0
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"


class Permanent(Exception):
    """The receiver refused the message itself: trying again will not help."""


def summary(event: str, p: dict[str, Any]) -> str:
    name = p.get("definition", "?")
    if p.get("test"):
        return f"taskd test notification for {name}"
    if event in ("alert", "trigger") and p.get("alert"):
        return f"taskd alert on {name}: {p['alert']} ({p.get('detail', '')})"
    if event in ("alert_resolved", "resolve") and p.get("alert"):
        return f"taskd alert resolved on {name}: {p['alert']} ({p.get('detail', '')})"
    if event == "resolve":
        return f"taskd: {name} succeeded again"
    return f"taskd: {name} {p.get('status', '')}".rstrip()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``<timestamp>.<body>`` (the timestamp is signed
    too, so an old message cannot be replayed with a fresh one)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


async def send_email(opts: Any, key: str, cfg: dict[str, Any], event: str,
                     payload: dict[str, Any]) -> None:  # fmt: skip
    if not opts.smtp_host:
        raise Permanent("no SMTP server is configured (--smtp-host)")
    msg = EmailMessage()
    msg["From"] = opts.smtp_from
    msg["To"] = f"{cfg.get('name') or ''} <{cfg['email']}>".strip()
    msg["Subject"] = summary(event, payload)
    msg["Message-ID"] = f"<{key}@taskd>"
    msg["X-Taskd-Idempotency-Key"] = key
    lines = [summary(event, payload), ""] + [f"{k}: {v}" for k, v in payload.items()]
    msg.set_content("\n".join(lines) + "\n")
    await aiosmtplib.send(
        msg, hostname=opts.smtp_host, port=opts.smtp_port, username=opts.smtp_user or None,
        password=opts.smtp_password or None, start_tls=opts.smtp_starttls, timeout=TIMEOUT,
    )  # fmt: skip


async def post(session: aiohttp.ClientSession, url: str, body: bytes,
               headers: dict[str, str]) -> None:  # fmt: skip
    headers = {"Content-Type": "application/json", **headers}
    async with session.post(url, data=body, headers=headers,
                            timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as resp:  # fmt: skip
        if resp.status < 300:
            return
        text = (await resp.text())[:200]
        why = f"{url} answered {resp.status}: {text}"
        if 400 <= resp.status < 500 and resp.status not in (408, 409, 425, 429):
            raise Permanent(why)
        raise RuntimeError(why)


def pagerduty_url(opts: Any, cfg: dict[str, Any]) -> str:
    url = cfg.get("api_url") or opts.pagerduty_url or PAGERDUTY_URL
    if url.rstrip("/").count("/") <= 2:  # a bare host, as Sundial's api_url: the v2 endpoint
        url = url.rstrip("/") + "/v2/enqueue"
    return url


async def send_pagerduty(
    session: aiohttp.ClientSession, opts: Any, key: str, cfg: dict[str, Any], event: str,
    payload: dict[str, Any],
) -> None:  # fmt: skip
    body = {
        "routing_key": cfg["service_key"],
        "event_action": event,
        "dedup_key": payload.get("dedup_key"),
        "client": "taskd",
    }
    if event == "trigger":
        body["payload"] = {"summary": summary(event, payload), "source": "taskd",
                           "severity": "error", "custom_details": payload}  # fmt: skip
    await post(session, pagerduty_url(opts, cfg), orjson.dumps(body),
               {"X-Taskd-Idempotency-Key": key})  # fmt: skip


async def send_webhook(
    session: aiohttp.ClientSession, key: str, cfg: dict[str, Any], event: str,
    payload: dict[str, Any], secret: str | None,
) -> None:  # fmt: skip
    body = orjson.dumps({"id": key, "event": event, "summary": summary(event, payload),
                         **payload})  # fmt: skip
    ts = str(int(time.time()))
    headers = {"X-Taskd-Idempotency-Key": key, "X-Taskd-Timestamp": ts}
    if secret is not None:
        headers["X-Taskd-Signature"] = sign(secret, ts, body)
    await post(session, cfg["url"], body, headers)


async def send_slack(session: aiohttp.ClientSession, key: str, cfg: dict[str, Any],
                     event: str, payload: dict[str, Any]) -> None:  # fmt: skip
    text = summary(event, payload)
    if payload.get("process_id"):
        text += f" (process {payload['process_id']})"
    await post(session, cfg["url"], orjson.dumps({"text": text}), {"X-Taskd-Idempotency-Key": key})
