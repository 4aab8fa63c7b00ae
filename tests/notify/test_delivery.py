"""Notifications reach real receivers: SMTP, PagerDuty-shaped and signed webhooks, Slack."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time

from tests.notify.receivers import Receiver, smtp_server, until
from tests.server import Server

SIGNING = "webhook-signing-key-0123"
KEY = "X-Taskd-Idempotency-Key"


def definition(name: str, script: str, notifications: list) -> dict:
    return {
        "process_definition_name": name,
        "task_definitions": [{"task_definition_name": "main",
                              "executable": {"shell_script_command": {"script": script}}}],
        "notifications": notifications,
    }  # fmt: skip


async def put_definition(srv: Server, doc: dict) -> None:
    status, body = await srv.request(
        "PUT", f"/api/process_definitions/{doc['process_definition_name']}", json=doc
    )
    assert status == 200, body


async def trigger(srv: Server, name: str) -> None:
    status, body = await srv.request("POST", f"/api/process_definitions/{name}/trigger")
    assert status == 204, body


async def history(srv: Server, name: str) -> dict:
    status, body = await srv.request("GET", f"/api/process_definitions/{name}/notifications")
    assert status == 200, body
    return body


async def test_a_failure_reaches_every_channel_and_the_next_success_resolves(tmp_path):
    ctl, mailbox = smtp_server()
    recv = Receiver()
    await recv.start()
    srv = Server(tmp_path, "--smtp-host", "127.0.0.1", "--smtp-port", str(ctl.port),
                 "--pagerduty-url", f"{recv.url}/pd/v2/enqueue")  # fmt: skip
    try:
        await srv.start()
        status, _ = await srv.request("PUT", "/api/secrets/hooksig", json={"value": SIGNING})
        assert status == 201
        channels = [
            {"email": {"name": "Ops", "email": "ops@example.com", "notify_when": "on_failure"}},
            {"pagerduty": {"service_key": "svc-123"}},
            {"webhook": {"url": f"{recv.url}/hook", "secret": "hooksig", "notify_when": "always"}},
            {"slack": {"url": {"secret": "slack-url"}}},  # a webhook URL is a credential
        ]  # fmt: skip
        status, _ = await srv.request("PUT", "/api/secrets/slack-url",
                                      json={"value": f"{recv.url}/slack"})  # fmt: skip
        assert status == 201
        await put_definition(srv, definition("nightly", "exit 1", channels))
        await trigger(srv, "nightly")
        await until(lambda: recv.on("/pd/v2/enqueue") and recv.on("/hook")
                    and recv.on("/slack") and mailbox.messages)  # fmt: skip

        mail = mailbox.messages[0]
        assert mail.rcpt_tos == ["ops@example.com"]
        text = mail.content.decode()
        assert "nightly" in text and "failed" in text and f"{KEY}: taskd-" in text

        (pd,) = recv.on("/pd/v2/enqueue")
        assert pd.json["event_action"] == "trigger" and pd.json["routing_key"] == "svc-123"
        assert pd.json["dedup_key"] == "taskd/nightly"
        assert pd.json["payload"]["severity"] == "error"

        (hook,) = recv.on("/hook")
        ts = hook.headers["X-Taskd-Timestamp"]
        assert abs(int(ts) - time.time()) < 300
        want = hmac.new(SIGNING.encode(), ts.encode() + b"." + hook.body, hashlib.sha256)
        assert hmac.compare_digest(hook.headers["X-Taskd-Signature"], "sha256=" + want.hexdigest())
        assert hook.json["status"] == "failed" and hook.json["id"] == hook.headers[KEY]
        assert "failed" in recv.on("/slack")[0].json["text"]

        await put_definition(srv, definition("nightly", "true", channels))  # fixed
        await trigger(srv, "nightly")
        await until(lambda: len(recv.on("/pd/v2/enqueue")) == 2 and len(recv.on("/hook")) == 2)
        resolve = recv.on("/pd/v2/enqueue")[1].json
        assert resolve["event_action"] == "resolve" and resolve["dedup_key"] == "taskd/nightly"
        assert recv.on("/hook")[1].json["status"] == "succeeded"
        await until(lambda: len(recv.on("/slack")) == 2)  # a state change: Slack hears it
        await asyncio.sleep(1)
        assert len(mailbox.messages) == 1  # on_failure: the recovery is not mailed

        rows = (await history(srv, "nightly"))["notifications"]
        assert len(rows) == 7
        assert {r["state"] for r in rows} == {"delivered"}
        assert len({r["id"] for r in rows}) == 7
        keys = [h.headers[KEY] for h in recv.hits]
        assert len(set(keys)) == len(keys)  # every message its own key
    finally:
        srv.stop()
        await recv.stop()
        ctl.stop()


async def test_a_receiver_that_is_down_gets_the_message_once_it_is_back(tmp_path):
    recv = Receiver(up=False)
    await recv.start()
    srv = Server(tmp_path)
    try:
        await srv.start()
        await put_definition(srv, definition("flaky", "exit 3", [
            {"webhook": {"url": f"{recv.url}/hook"}}]))  # fmt: skip
        await trigger(srv, "flaky")

        async def tried():
            rows = (await history(srv, "flaky"))["notifications"]
            return rows and rows[0]["tries"] >= 1 and rows[0]

        row = await until(tried)
        assert row["state"] == "pending" and "503" in row["last_error"]
        assert row["next_try_at"] is not None
        recv.up = True
        await until(lambda: recv.on("/hook"), within=60)
        row = await until(tried)
        await until(lambda: history(srv, "flaky"))
        rows = (await history(srv, "flaky"))["notifications"]
        assert rows[0]["state"] == "delivered" and rows[0]["last_error"] is None
    finally:
        srv.stop()
        await recv.stop()


async def test_sigkill_between_failure_and_delivery_loses_nothing(tmp_path):
    """Killed while the receiver holds the request: sent again after the restart, with the
    same idempotency key, so the receiver can tell it is the same message."""
    recv = Receiver(hold=asyncio.Event())
    await recv.start()
    srv = Server(tmp_path)
    try:
        await srv.start()
        await put_definition(srv, definition("crashy", "exit 1", [
            {"webhook": {"url": f"{recv.url}/hook"}}]))  # fmt: skip
        await trigger(srv, "crashy")
        await until(lambda: recv.on("/hook"))
        srv.kill9()
        recv.hold.set()
        recv.hold = None
        await srv.start()
        await until(lambda: len(recv.on("/hook")) >= 2, within=60)

        async def delivered():
            rows = (await history(srv, "crashy"))["notifications"]
            return rows and rows[0]["state"] == "delivered"

        await until(delivered)
        hits = recv.on("/hook")
        assert len({h.headers[KEY] for h in hits}) == 1
        assert len({h.json["process_id"] for h in hits}) == 1
        rows = (await history(srv, "crashy"))["notifications"]
        assert len(rows) == 1
    finally:
        srv.stop()
        await recv.stop()


async def test_the_test_button_sends_through_every_channel(tmp_path):
    ctl, mailbox = smtp_server()
    recv = Receiver()
    await recv.start()
    srv = Server(tmp_path, "--smtp-host", "127.0.0.1", "--smtp-port", str(ctl.port),
                 "--pagerduty-url", f"{recv.url}/pd")  # fmt: skip
    try:
        await srv.start()
        await put_definition(srv, definition("quiet", "true", [
            {"email": {"email": "ops@example.com"}},
            {"pagerduty": {"service_key": "svc"}},
            {"slack": {"url": f"{recv.url}/slack"}},
        ]))  # fmt: skip
        status, body = await srv.request(
            "POST", "/api/process_definitions/quiet/notifications/test"
        )
        assert status == 202 and body == {"queued": 3}
        await until(lambda: mailbox.messages and recv.on("/pd") and recv.on("/slack"))
        assert "test notification" in recv.on("/slack")[0].json["text"]
        assert recv.on("/pd")[0].json["dedup_key"] == "taskd/quiet/test"
        status, _ = await srv.request("POST", "/api/process_definitions/nope/notifications/test")
        assert status == 404
    finally:
        srv.stop()
        await recv.stop()
        ctl.stop()
