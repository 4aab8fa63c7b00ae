#!/usr/bin/env python3
"""A work-queue worker: lease a task, do it, release it; stop when the queue is empty.

Only the Python standard library. Set up once (admin):

    taskd queue project create thumbnails -f examples/workqueue/project.yaml
    taskd queue worker create --alias laptop        # prints WORKER_ID and WORKER_SECRET
    WORKER_ID=... WORKER_SECRET=... PROJECT=1 python3 worker.py --request-access
    taskd queue access accept thumbnails $WORKER_ID

then run it:  TASKD_URL=http://127.0.0.1:7070 WORKER_ID=... WORKER_SECRET=... PROJECT=1 \
    python3 examples/workqueue/worker.py

Each task's recipe is run as the work (here: the path is upper-cased and printed); a task
that raises (here: a path not ending in .png) is released as failed, so the queue retries
it up to its max_retries.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request

URL = os.environ.get("TASKD_URL", "http://127.0.0.1:7070").rstrip("/")
HEADERS = {
    "X-Worker-ID": os.environ["WORKER_ID"],
    "X-Secret": os.environ["WORKER_SECRET"],
    "Content-Type": "application/json",
}
PROJECT = int(os.environ["PROJECT"])
DONE, FAILED = 0, 1


def call(method: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(URL + path, data=data, method=method, headers=HEADERS)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:  # the queue answers errors as JSON too
        return json.load(exc)


def work(recipe: str) -> str:
    """The actual job. Replace with yours."""
    if not recipe.endswith(".png"):
        raise ValueError(f"{recipe!r} is not a .png path")
    return recipe.upper()


def main() -> int:
    if "--request-access" in sys.argv:
        reply = call(
            "POST", "/project/request_access", {"project": PROJECT, "assign": True, "submit": True}
        )
        print("access requested" if reply["ok"] else reply["message"])
        return 0 if reply["ok"] else 1
    handled = 0
    while True:
        reply = call("GET", f"/task/get/{PROJECT}")
        if not reply["ok"]:
            print(f"{handled} tasks done; queue says: {reply.get('message')}")
            return 0
        task = reply["content"]["task"]
        try:
            print(f"task {task['id']}: {work(task['recipe'])}")
            result = DONE
        except Exception as exc:  # any failure of the work: let the queue retry it
            print(f"task {task['id']} failed: {exc}", file=sys.stderr)
            result = FAILED
        call("POST", "/task/release", {"task_id": task["id"], "result": result, "verification": 0})
        handled += 1


if __name__ == "__main__":
    sys.exit(main())
