"""The HTTP baseline: a bare aiohttp app answering ``GET /ready`` as taskd does (orjson body).

python bench/bare_app.py PORT
"""

from __future__ import annotations

import sys

import orjson
from aiohttp import web


async def ready(request: web.Request) -> web.Response:
    return web.Response(
        body=orjson.dumps({"msg": "Ya like DAGs?"}), content_type="application/json"
    )


def main() -> None:
    app = web.Application()
    app.router.add_get("/ready", ready)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
