"""Stream set-up through flespi's REST API, against the request-checking stand-in
(tests/flespi_standin.py: a real aiohttp app on 127.0.0.1; where its shapes come from is said there)."""

from __future__ import annotations

import asyncio
import shlex
import time
from collections.abc import Iterator

import orjson
import pytest

from app.server.flespi_api import FlespiClient, FlespiError, check_selector, name_selector
from app.server.flespi_stream import (
    CA_FIELD,
    StreamSpec,
    curl_command,
    duplicate_warning,
    find_stream,
    http_protocol_id,
    inject_into_device,
    inject_into_stream,
    probe_messages,
    set_up_stream,
    stream_body,
)
from tests.conftest import running_listener
from tests.flespi_standin import TOKEN, RunningStandin, running_standin

#: The body the set-up helper used to POST before issue 11 (kept verbatim to prove it is refused).
OLD_BODY = [{"name": "trackmon", "configuration": {"ident": "http", "uri": "https://a.example.test/",
                                                  "headers": [{"name": "Authorization", "value": "Bearer t"}],
                                                  "limit_messages": 1000}}]


@pytest.fixture
def standin() -> Iterator[RunningStandin]:
    with running_standin() as running:
        yield running


def run(coroutine):
    return asyncio.run(coroutine)


async def with_client(api: str, job, token: str = TOKEN):
    async with FlespiClient(token, api) as client:
        return await job(client)


def methods(standin: RunningStandin) -> list[str]:
    return [f"{m} {p.split('?')[0]}" for m, p, _ in standin.state.calls]


def test_the_new_body_is_accepted_and_the_old_one_refused(standin) -> None:
    spec = StreamSpec("trackmon", "https://a.example.test/", {"Authorization": "Bearer t"}, limit_messages=500,
                      ca_pem="-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")

    async def job(client):
        protocol = await http_protocol_id(client)
        created = await client.call("POST", "/gw/streams", body=[stream_body(spec, protocol)])
        with pytest.raises(FlespiError) as refused:
            await client.call("POST", "/gw/streams", body=OLD_BODY)
        return protocol, created, str(refused.value)

    protocol, [created], refusal = run(with_client(standin.url, job))
    assert protocol == 1 and created["protocol_id"] == 1 and created["name"] == "trackmon"
    configuration = created["configuration"]
    assert configuration["headers"] == [{"name": "Authorization", "value": "Bearer t"}]
    assert configuration["limit_messages"] == 500 and "BEGIN CERTIFICATE" in configuration[CA_FIELD]
    assert "ident" not in configuration  # no invented ident mask
    assert "400" in refusal and "required field 'protocol_id' is missing" in refusal
    assert len(standin.state.streams) == 1


def test_field_types_and_unknown_fields_are_refused_with_reasons(standin) -> None:
    bad = [({"name": "x", "protocol_id": "1", "configuration": {"uri": "https://a.b/"}}, "must be of type int"),
           ({"name": "x", "protocol_id": 1, "configuration": {"uri": "ftp://a.b/"}}, "http(s) URI"),
           ({"name": "x", "protocol_id": 1, "configuration": {"uri": "https://a.b/", "headers": {"a": "b"}}},
            "must be of type list"),
           ({"name": "x", "protocol_id": 1, "colour": "red", "configuration": {"uri": "https://a.b/"}},
            "unknown field 'colour'")]

    async def job(client):
        out = []
        for body, _ in bad:
            with pytest.raises(FlespiError) as refused:
                await client.call("POST", "/gw/streams", body=[body])
            out.append(str(refused.value))
        return out

    for text, (_, reason) in zip(run(with_client(standin.url, job)), bad, strict=True):
        assert "answered 400" in text and reason in text
    assert standin.state.streams == {}


def test_creates_then_patches_keeping_what_the_user_set(standin) -> None:
    first = StreamSpec("trackmon", "https://one.example.test/", {"Authorization": "Bearer a"}, limit_messages=1000)
    moved = StreamSpec("trackmon", "https://two.example.test/", {"Authorization": "Bearer b"})

    async def job(client):
        created = await set_up_stream(client, first)
        # The user tunes the stream in flespi's panel meanwhile.
        stream = standin.state.streams[created.stream_id]
        stream.update(queue_ttl=86400, metadata={"owner": "ops"})
        stream["configuration"]["limit_messages"] = 250
        stream["configuration"]["headers"].append({"name": "X-Site", "value": "north"})
        standin.state.calls.clear()
        updated = await set_up_stream(client, moved)
        again = await set_up_stream(client, moved)
        return created, updated, again

    created, updated, again = run(with_client(standin.url, job))
    assert created.created and created.lines() == [f"created stream {created.stream_id}"]
    assert not updated.created and updated.stream_id == created.stream_id
    assert updated.changed == ["configuration.uri", "configuration.headers"]
    assert again.changed == [] and "already set up" in again.lines()[0]
    stream = standin.state.streams[created.stream_id]
    assert stream["configuration"]["uri"] == "https://two.example.test/"
    assert stream["configuration"]["limit_messages"] == 250  # the user's value, kept
    assert stream["configuration"]["headers"] == [{"name": "X-Site", "value": "north"},
                                                  {"name": "Authorization", "value": "Bearer b"}]
    assert stream["queue_ttl"] == 86400 and stream["metadata"] == {"owner": "ops"}
    calls = methods(standin)
    assert "PUT" not in " ".join(calls) and calls.count(f"PATCH /gw/streams/{created.stream_id}") == 1
    # Found by name, never by listing every stream.
    assert "GET /gw/streams/all" not in calls
    assert f"GET /gw/streams/{name_selector('trackmon')}" in calls


def test_put_would_have_wiped_the_users_configuration(standin) -> None:
    """Why PATCH: the stand-in's PUT replaces the field whole, as flespi documents, and the
    stream loses what the user set (here the update is even refused: no uri left)."""
    stream_id = standin.state.add_stream({"name": "s", "protocol_id": 1, "configuration": {
        "uri": "https://a.b/", "limit_messages": 5}})

    async def job(client):
        await client.call("PUT", f"/gw/streams/{stream_id}", body={"configuration": {"uri": "https://c.d/"}})
        return standin.state.streams[stream_id]["configuration"]

    assert run(with_client(standin.url, job)) == {"uri": "https://c.d/"}


def test_a_same_named_mqtt_stream_is_left_alone(standin) -> None:
    mqtt = {"name": "trackmon", "protocol_id": 2, "configuration": {"topic": "fleet/#", "qos": 1}}
    mqtt_id = standin.state.add_stream(mqtt)
    before = orjson.dumps(standin.state.streams[mqtt_id])

    async def job(client):
        return await set_up_stream(client, StreamSpec("trackmon", "https://a.example.test/", {}))

    result = run(with_client(standin.url, job))
    assert result.created and result.stream_id != mqtt_id
    assert orjson.dumps(standin.state.streams[mqtt_id]) == before
    assert any(f"stream {mqtt_id}" in line and "left alone" in line for line in result.lines())
    assert standin.state.streams[result.stream_id]["protocol_id"] == 1


def test_subscriptions_to_devices_channels_and_groups(standin) -> None:
    state = standin.state
    state.add_device(11, "van 1", "3520001", channel_id=5)
    state.add_device(12, "van 2", "3520002", channel_id=5)
    state.add_device(13, "truck", "3520003", channel_id=6)
    state.channels.update({5: {"id": 5, "name": "teltonika"}, 6: {"id": 6, "name": "queclink"}})
    state.groups[70] = {"id": 70, "name": "north", "devices": [13]}

    async def job(client):
        result = await set_up_stream(client, StreamSpec("trackmon", "https://a.example.test/", {}),
                                     {"devices": ["11", "12"], "channels": ["6"], "groups": ["name=north"]})
        listed = await client.items("devices", "all", ("id", "name"))
        return result, listed

    result, listed = run(with_client(standin.url, job))
    subs = state.subscriptions[result.stream_id]
    assert subs == {"devices": {11, 12}, "channels": {6}, "groups": {70}}
    assert result.subscribed == {"devices": "11,12", "channels": "6", "groups": "name=north"}
    assert "subscribed to devices 11,12" in result.lines()
    assert listed == [{"id": 11, "name": "van 1"}, {"id": 12, "name": "van 2"}, {"id": 13, "name": "truck"}]
    called = methods(standin)
    assert f"POST /gw/streams/{result.stream_id}/devices/11,12" in called
    assert f"POST /gw/streams/{result.stream_id}/groups/name=north" in called


def test_duplicate_warning_when_a_device_and_its_channel_are_both_chosen() -> None:
    devices = [{"id": 11, "name": "van 1", "channel_id": 5}, {"id": 13, "name": "truck", "channel_id": 6}]
    assert "van 1 also reaches flespi through a chosen channel" in duplicate_warning(devices, [{"id": 5}])
    assert "pick either devices or channels" in duplicate_warning([{"id": 9}], [{"id": 5}])
    assert duplicate_warning(devices, []) == "" and duplicate_warning([], [{"id": 5}]) == ""


def test_errors_are_reported_in_plain_words(standin) -> None:
    spec = StreamSpec("x", "https://a.b.c/", {})
    with pytest.raises(FlespiError, match="did not accept the token"):
        run(with_client(standin.url, lambda c: set_up_stream(c, spec), token="nope"))
    with pytest.raises(FlespiError, match=r"answered 400 .*http\(s\) URI"):
        run(with_client(standin.url, lambda c: set_up_stream(c, StreamSpec("x", "ftp://nowhere", {}))))
    with pytest.raises(FlespiError, match=r"answered 400 .*invalid selector"):
        run(with_client(standin.url, lambda c: c.items("devices", "{name=}")))
    with pytest.raises(FlespiError, match="cannot reach"):
        run(with_client("http://127.0.0.1:9", lambda c: set_up_stream(c, spec)))
    with pytest.raises(ValueError, match="cannot hold"):
        name_selector('say "hi"')
    assert check_selector(" 12,34 ") == "12,34" and check_selector("configuration.ident=35") == "configuration.ident=35"
    with pytest.raises(ValueError, match="not a flespi selector"):
        check_selector("12/../all")


def test_curl_commands(standin) -> None:
    spec = StreamSpec("trackmon", "https://abc.trycloudflare.com/", {"Authorization": "Bearer t0k"})
    command = shlex.split(curl_command(spec, 1))
    assert command[:2] == ["curl", "-X"] and command[-1] == "https://flespi.io/gw/streams"
    assert "Authorization: FlespiToken $FLESPI_TOKEN" in command
    assert orjson.loads(command[command.index("-d") + 1]) == [stream_body(spec, 1)]
    lookup = curl_command(spec, None, standin.url)
    assert "/gw/stream-protocols/all?fields=id,name" in lookup and ".[0].protocol_id = $p" in lookup


def test_flespi_itself_delivers_the_test_to_the_listener(tmp_path, standin) -> None:
    """The stream queue and a device: both make the stand-in's HTTP stream POST to a real
    listener, which records the marker; a wrong listener token shows in the stream's logs."""
    standin.state.add_device(21, "probe", "3529999")
    with running_listener(tmp_path / "rec.sqlite") as served:
        async def job(client):
            result = await set_up_stream(client, StreamSpec("trackmon", served.url, {}), {"devices": ["21"]})
            marker, messages = probe_messages()
            await inject_into_stream(client, result.stream_id, messages)
            other, more = probe_messages(1)
            await inject_into_device(client, 21, more)
            return result.stream_id, marker, other

        stream_id, marker, other = run(with_client(standin.url, job))
        deadline = time.monotonic() + 10
        while served.listener.stats.messages < 3:
            assert time.monotonic() < deadline, "flespi's delivery never arrived"
            time.sleep(0.05)
        idents = {m.message.ident for m in _recorded(served)}
        assert {marker, other} <= idents
    logs = standin.state.logs[stream_id]
    assert sum(r.get("accepted", 0) for r in logs) == 3 and not any("error_text" in r for r in logs)


def _recorded(served):
    import sqlite3

    from app.store.queries import iter_messages, list_sessions
    conn = sqlite3.connect(served.db)
    try:
        return [m for s in list_sessions(conn) for m in iter_messages(conn, s.id)]
    finally:
        conn.close()


def test_finding_a_stream_matches_name_and_protocol(standin) -> None:
    standin.state.add_stream({"name": "trackmon", "protocol_id": 2, "configuration": {}})
    ours = standin.state.add_stream({"name": "trackmon", "protocol_id": 1, "configuration": {"uri": "https://a/"}})
    standin.state.add_stream({"name": "trackmon-2", "protocol_id": 1, "configuration": {"uri": "https://b/"}})

    async def job(client):
        return await find_stream(client, "trackmon", 1)

    stream, others = run(with_client(standin.url, job))
    assert stream["id"] == ours and len(others) == 1
