"""What a stranger can learn from the listener: no token, no header value, no paths."""

from __future__ import annotations

import orjson

from app.server.auth import HeaderAuth
from app.server.listener import ListenerConfig
from tests.conftest import http, running_listener

TOKEN = "s3cret-status-token"


def test_a_refusal_names_only_the_header_and_a_standard_scheme() -> None:
    assert HeaderAuth.bearer("t").expected == "Authorization: Bearer <token>"
    assert HeaderAuth.parse("X-Key: fixed-part secret-part").expected == "X-Key: <secret>"
    assert HeaderAuth.parse("Authorization: Basic dXNlcjpwYXNz").expected == "Authorization: <secret>"


def test_a_401_does_not_reveal_a_custom_header_value(db_path) -> None:
    config = ListenerConfig(auth=HeaderAuth.parse("X-Key: fixed-part secret-part"))
    with running_listener(db_path, config) as served:
        missing = served.post([{"ident": "a"}])
        wrong = served.post([{"ident": "a"}], headers={"X-Key": "fixed-part guess"})
        right = served.post([{"ident": "a"}], headers={"X-Key": "fixed-part secret-part"})
    for reply in (missing, wrong):
        text = orjson.dumps(reply.body).decode()
        assert reply.status == 401 and "X-Key" in text
        assert "fixed-part" not in text and "secret-part" not in text
    assert right.status == 200


def test_status_without_the_token_says_only_that_it_is_alive(db_path) -> None:
    config = ListenerConfig(path="/flespi-in", auth=HeaderAuth.bearer(TOKEN))
    with running_listener(db_path, config) as served:
        status_url = served.url.rsplit("/", 1)[0] + "/status"
        stranger = http("GET", status_url)
        wrong = http("GET", status_url, headers={"Authorization": "Bearer nope"})
        owner = http("GET", status_url, headers={"Authorization": f"Bearer {TOKEN}"})
        lost = http("GET", served.url.rsplit("/", 1)[0] + "/other")
        put = http("PUT", served.url.rsplit("/", 1)[0] + "/other", b"x")
    for reply in (stranger, wrong):
        assert reply.status == 200 and set(reply.body) == {"service", "status", "auth", "uptime_s"}
        assert str(db_path) not in orjson.dumps(reply.body).decode()
    assert owner.body["database"] == str(db_path) and owner.body["path"] == "/flespi-in"
    for reply in (lost, put):  # neither a 404 nor a 405 says where the stream path is
        assert reply.status == 404 and "/flespi-in" not in orjson.dumps(reply.body).decode()


def test_status_without_auth_configured_is_the_full_one(served) -> None:
    assert http("GET", served.url + "status").body["database"] == str(served.db)
