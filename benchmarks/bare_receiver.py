"""Baseline for benchmarks/ingest.py: an aiohttp server that reads the body and answers 200."""

import sys

from aiohttp import web


async def handle(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=b'{"ok":true}', content_type="application/json")


app = web.Application(client_max_size=256 * 1024 * 1024)
app.router.add_post("/", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
