"""The flespi set-up helper against a local stand-in of the REST API (recorded-style answers)."""

from __future__ import annotations

import asyncio
import shlex

import orjson
import pytest
from aiohttp import web

from app.server.flespi_api import FlespiError, create_or_update_stream, curl_command, stream_config

TOKEN = "flespi-token-123"


class FakeFlespi:
    """Plays /gw/streams with answers shaped like flespi's ({"result": [...]}, {"errors": [...]})."""

    def __init__(self) -> None:
        self.streams: dict[int, dict] = {}
        self.calls: list[tuple[str, str, object]] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/gw/streams{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read()) if request.can_read_body else None
        self.calls.append((request.method, request.path_qs, body))
        if request.headers.get("Authorization") != f"FlespiToken {TOKEN}":
            return web.json_response({"errors": [{"reason": "not authorized"}]}, status=401)
        if request.method == "GET":
            return web.json_response({"result": [{"id": i, "name": s["name"]} for i, s in self.streams.items()]})
        if request.method == "POST":
            created = []
            for item in body:
                if not item["configuration"].get("uri", "").startswith(("http://", "https://")):
                    return web.json_response({"errors": [{"reason": "invalid uri", "code": 1}]}, status=400)
                new_id = 1000 + len(self.streams)
                self.streams[new_id] = item
                created.append({"id": new_id, **item})
            return web.json_response({"result": created})
        stream_id = int(request.path.rsplit("/", 1)[1])
        self.streams[stream_id]["configuration"] = body["configuration"]
        return web.json_response({"result": [{"id": stream_id}]})


async def with_fake(scenario):
    fake = FakeFlespi()
    runner = web.AppRunner(fake.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        return await scenario(fake, f"http://127.0.0.1:{runner.addresses[0][1]}")
    finally:
        await runner.cleanup()


def test_stream_config_and_curl_command() -> None:
    config = stream_config("trackmon", "https://abc.trycloudflare.com/", {"Authorization": "Bearer t0k"},
                           ca_pem="-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    c = config["configuration"]
    assert c["uri"] == "https://abc.trycloudflare.com/" and c["limit_messages"] == 1000
    assert c["headers"] == [{"name": "Authorization", "value": "Bearer t0k"}] and "BEGIN CERTIFICATE" in c["ssl_ca"]
    command = shlex.split(curl_command(config))
    assert command[:2] == ["curl", "-X"] and command[-1] == "https://flespi.io/gw/streams"
    assert "Authorization: FlespiToken $FLESPI_TOKEN" in command
    assert orjson.loads(command[command.index("-d") + 1]) == [config]


def test_creates_then_updates_the_same_stream() -> None:
    async def scenario(fake, api):
        config = stream_config("trackmon", "https://one.example.test/", {"Authorization": "Bearer a"})
        first = await create_or_update_stream(TOKEN, config, api)
        moved = stream_config("trackmon", "https://two.example.test/", {"Authorization": "Bearer b"})
        second = await create_or_update_stream(TOKEN, moved, api)
        return fake, first, second

    fake, first, second = asyncio.run(with_fake(scenario))
    assert first == (1000, True) and second == (1000, False)
    assert fake.streams[1000]["configuration"]["uri"] == "https://two.example.test/"
    assert [c[0] for c in fake.calls] == ["GET", "POST", "GET", "PUT"]


def test_errors_are_reported_in_plain_words() -> None:
    async def wrong_token(fake, api):
        await create_or_update_stream("nope", stream_config("x", "https://a.b.c/", {}), api)

    with pytest.raises(FlespiError, match="did not accept the token"):
        asyncio.run(with_fake(wrong_token))

    async def bad_uri(fake, api):
        await create_or_update_stream(TOKEN, stream_config("x", "ftp://nowhere", {}), api)

    with pytest.raises(FlespiError, match="400: invalid uri"):
        asyncio.run(with_fake(bad_uri))

    async def unreachable(fake, api):
        await create_or_update_stream(TOKEN, stream_config("x", "https://a.b.c/", {}), "http://127.0.0.1:9")

    with pytest.raises(FlespiError, match="cannot reach"):
        asyncio.run(with_fake(unreachable))
