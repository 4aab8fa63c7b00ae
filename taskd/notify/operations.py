"""Routes of notifications, alerts and secrets, and their start with the app."""

from __future__ import annotations

import time

from aiohttp import web

from taskd.errors import NotFound
from taskd.http import on_start
from taskd.http.guard import access
from taskd.http.jsonio import json_response, read_json
from taskd.http.keys import SERVICES
from taskd.http.openapi import Part, declare
from taskd.http.openapi.schema import STR, Op, arr, obj
from taskd.notify.watchdog import Watchdog
from taskd.notify.worker import Notifier
from taskd.secrets.service import Secrets
from taskd.store import notifications as q
from taskd.timefmt import iso_ms

routes = web.RouteTableDef()
SECRETS: web.AppKey[Secrets] = web.AppKey("secrets")
NOTIFIER: web.AppKey[Notifier] = web.AppKey("notifier")


def _row(r: dict) -> dict:
    return {
        "id": r["id"], "process_id": r["process_id"], "channel": r["channel"],
        "event": r["event"], "state": r["state"], "tries": r["tries"],
        "last_error": r["last_error"], "created_at": iso_ms(r["created_at"]),
        "delivered_at": iso_ms(r["delivered_at"]), "next_try_at": (
            iso_ms(r["next_at"]) if r["state"] == "pending" else None),
    }  # fmt: skip


@routes.get("/api/process_definitions/{name}/notifications")
@access("read")
async def notification_history(request: web.Request) -> web.Response:
    """A definition's notifications (newest first), with each one's delivery state and last
    error, and its alerts."""
    name = request.match_info["name"]

    def read(db):
        q.definition_exists(db, name)  # 404 for an unknown definition
        return q.history(db, name), q.alert_rows(db, name)

    rows, alerts = await request.app[SERVICES].store.read(read)
    return json_response({
        "notifications": [_row(r) for r in rows],
        "alerts": [{"kind": a["kind"], "state": a["state"], "since": iso_ms(a["since"]),
                    "detail": a["detail"]} for a in alerts],
    })  # fmt: skip


@routes.post("/api/process_definitions/{name}/notifications/test")
@access("admin")
async def test_notifications(request: web.Request) -> web.Response:
    """Send a test message through each of the definition's channels (delivered like any
    other: see the history for the outcome)."""
    name = request.match_info["name"]
    svc = request.app[SERVICES]

    def queue(db):
        q.definition_exists(db, name)  # 404 for an unknown definition
        return q.queue_test(db, name, time.time_ns())

    count = await svc.store.write(queue)
    request.app[NOTIFIER].wake.set()
    return json_response({"queued": count}, status=202)


def _secret_json(name: str, meta: dict) -> dict:
    return {"name": name, "created_at": iso_ms(meta["created_at"]),
            "updated_at": iso_ms(meta["updated_at"])}  # fmt: skip


@routes.get("/api/secrets")
@access("admin")
async def list_secrets(request: web.Request) -> web.Response:
    """Names of the secrets (values are never returned)."""
    s = request.app[SECRETS]
    return json_response({"secrets": [_secret_json(n, m) for n, m in sorted(s.meta.items())]})


@routes.put("/api/secrets/{name}")
@access("admin")
async def put_secret(request: web.Request) -> web.Response:
    """Create or replace a secret: ``{"value": "..."}``."""
    body = await read_json(request, expect=dict)
    s = request.app[SECRETS]
    name = request.match_info["name"]
    new = await s.put(name, body.get("value"))
    return json_response(_secret_json(name, s.meta[name]), status=201 if new else 200)


@routes.get("/api/secrets/{name}")
@access("admin")
async def get_secret(request: web.Request) -> web.Response:
    """A secret's name and times; never its value."""
    s = request.app[SECRETS]
    name = request.match_info["name"]
    if name not in s.meta:
        raise NotFound(f"no secret named {name!r}")
    return json_response(_secret_json(name, s.meta[name]))


@routes.delete("/api/secrets/{name}")
@access("admin")
async def delete_secret(request: web.Request) -> web.Response:
    await request.app[SECRETS].delete(request.match_info["name"])
    return web.Response(status=204)


NAME = {"name": STR}
SECRET = obj({"name": STR, "created_at": STR, "updated_at": STR}, ["name"])
OPENAPI = {
    "GET /api/process_definitions/{name}/notifications": Op(
        "A definition's notifications and alerts",
        description="Every message queued for the definition (newest first) with its delivery"
        " state (pending, delivered, failed), tries, last error and next try; and its alerts.",
        path=NAME, extension=True,
        response=obj({"notifications": arr(obj({})), "alerts": arr(obj({}))}),
    ),
    "POST /api/process_definitions/{name}/notifications/test": Op(
        "Send a test notification", description="One test message per channel, queued and"
        " delivered as any other; PagerDuty gets a trigger with its own dedup key.",
        path=NAME, status=202, response=obj({"queued": {"type": "integer"}}), extension=True,
    ),
    "GET /api/secrets": Op("Secret names", path={}, extension=True,
                           response=obj({"secrets": arr(SECRET)})),
    "PUT /api/secrets/{name}": Op(
        "Create or replace a secret", description="Values are never returned.", path=NAME,
        body=obj({"value": STR}, ["value"]), status=201, response=SECRET, extension=True,
        also={200: "Replaced an existing secret"},
    ),
    "GET /api/secrets/{name}": Op("A secret's name and times", path=NAME, response=SECRET,
                                  extension=True),
    "DELETE /api/secrets/{name}": Op("Delete a secret", path=NAME, status=204, extension=True),
}  # fmt: skip


def setup(app: web.Application) -> None:
    """Add the routes; open the secrets and start delivery with the app."""
    app.add_routes(routes)
    about = "Notification history, alerts and named secrets."
    declare(app, __name__, Part("operations", "Operations", about, OPENAPI))

    async def start(services) -> None:
        settings, engine = services.settings, services.engine
        key_file = settings.secrets_key_file or settings.db.with_name(settings.db.name + ".key")
        secrets = Secrets(services.store, key_file)
        await secrets.start()
        app[SECRETS] = secrets
        engine.secret_values = secrets.values
        notifier = Notifier(services.store, settings, services.instance, secrets.values)
        app[NOTIFIER] = notifier
        watchdog = Watchdog(services.store, notifier.wake.set, settings.keep_runs_days)
        engine.run_end_writes.append(q.on_run_end)
        # The outbox rows are committed with the run's end; only then is the worker woken.
        engine.run_finished.append(lambda run: (notifier.wake.set(), watchdog.wake.set()))
        engine.run_started.append(lambda run: watchdog.wake.set())  # "longer than usual" timer
        engine.supervisor.spawn("notifications", notifier.loop)
        engine.supervisor.spawn("alerts", watchdog.loop)

    on_start(app, start)
