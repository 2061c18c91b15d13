"""The flespi HTTP stream that feeds this listener: its body, creating or patching it, its
subscriptions, and a test delivered by flespi itself.

Per field and endpoint, what is documented (and where) and what is assumed:

* ``GET /gw/stream-protocols/all?fields=id,name`` lists the stream protocols; the stream's
  ``protocol_id`` is the id of the one named ``http`` (documented: flespi-io-js
  ``src/configs.json`` path ``/stream-protocols/{stream-protocols.selector}``; flespi Toolbox
  ``src/store/actions.js`` asks exactly ``getStreamProtocols('all', {fields: 'name,id'})``).
* ``POST /gw/streams`` takes an array of ``{name, protocol_id, configuration, ...}``; ``enabled``,
  ``queue_ttl``, ``validate_message`` and ``metadata`` are top-level fields (documented:
  terraform-provider-flespi ``docs/resources/stream.md`` marks ``name`` and ``protocol_id``
  required; flespi-client ``resources/gateway/stream/types.go``; flespi KB "How to get data in
  your platform via flespi HTTP stream" for ``validate_message``).
* ``configuration.uri``, ``configuration.headers`` (list of ``{name, value}``) and
  ``configuration.limit_messages``: the KB article above names the URI, custom Authorization
  headers and ``limit_messages``; the ``{name, value}`` list shape of the headers is **assumed**
  (the shape this project used before; no document we could read shows it).
* the private-CA field: the KB says the stream can be given a private CA, but no public page we
  could read names the field; ``CA_FIELD`` is an **assumption**, kept in one place. If flespi
  names it otherwise it answers 400 with a ``schema_hint``, which is shown to the user.
* the ident mask (``%ident%`` by default, KB) is left alone: nothing here sets it.
* ``PATCH /gw/streams/{selector}`` patches fields and keeps the rest; ``PUT`` replaces the given
  fields whole (flespi's API guide, "CRUD Operations", for every entity). flespi-io-js's endpoint
  table still lists only PUT for streams; its 2.6.0 added PATCH as a generic request method.
  An existing stream is found with ``GET /gw/streams/{name=="..."}`` (expression selector,
  documented) and matched on name **and** ``protocol_id``: a same-named MQTT stream is left alone.
* ``POST /gw/streams/{id}/devices/{selector}``, ``.../channels/{selector}``,
  ``.../groups/{selector}`` subscribe the stream (documented: flespi-io-js ``src/configs.json``;
  KB "Stream — forwarding data": a stream forwards devices, groups of devices or whole
  channels). The KB article on HTTP streams itself warns that subscribing both channels and
  devices may deliver messages twice.
* test through flespi: ``POST /gw/devices/{selector}/messages`` stores messages in the device
  and passes them to the streams subscribed to it (documented: flespi-io-js ``docs/gatewayAPI.md``);
  ``POST /gw/streams/{selector}/messages`` exists with a ``data`` query parameter (flespi-io-js
  ``src/configs.json``) — that it puts the messages into the stream's queue is **assumed**.
"""

from __future__ import annotations

import shlex
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.server.flespi_api import DEFAULT_API, FlespiClient, FlespiError, ids_selector, name_selector

STREAMS = "/gw/streams"
HTTP_PROTOCOL = "http"
#: ASSUMED name of the HTTP stream's private-CA field (see the module docstring).
CA_FIELD = "ssl_ca"
#: Subscription kinds and their path segment under /gw/streams/{id}/.
KINDS = ("devices", "channels", "groups")


@dataclass(frozen=True)
class StreamSpec:
    """What trackmon wants of the stream; None leaves a field as flespi (or the user) has it."""

    name: str
    uri: str
    headers: dict[str, str] = field(default_factory=dict)
    limit_messages: int | None = None
    ca_pem: str | None = None
    validate_message: str | None = None


def stream_body(spec: StreamSpec, protocol_id: int | None) -> dict[str, Any]:
    """The create body (one element of the POSTed array). With ``protocol_id`` None (not looked
    up yet, for the curl command), the field is left out and flespi will refuse the body."""
    configuration: dict[str, Any] = {"uri": spec.uri,
                                     "headers": [{"name": k, "value": v} for k, v in spec.headers.items()]}
    if spec.limit_messages is not None:
        configuration["limit_messages"] = int(spec.limit_messages)
    if spec.ca_pem:
        configuration[CA_FIELD] = spec.ca_pem
    body: dict[str, Any] = {"name": spec.name}
    if protocol_id is not None:
        body["protocol_id"] = int(protocol_id)
    body["configuration"] = configuration
    if spec.validate_message:
        body["validate_message"] = spec.validate_message
    return body


def curl_command(spec: StreamSpec, protocol_id: int | None, api: str = DEFAULT_API) -> str:
    """A shell command creating the stream, with the flespi token left as $FLESPI_TOKEN. Without
    a looked-up protocol id it looks the id up first and sets it with jq."""
    base = api.rstrip("/")
    auth = '-H "Authorization: FlespiToken $FLESPI_TOKEN"'
    post = f'curl -X POST {auth} -H "Content-Type: application/json" '
    if protocol_id is not None:
        payload = orjson.dumps([stream_body(spec, protocol_id)]).decode()
        return f"{post}-d {shlex.quote(payload)} {shlex.quote(base + STREAMS)}"
    payload = orjson.dumps([stream_body(spec, None)]).decode()
    lookup = shlex.quote(base + "/gw/stream-protocols/all?fields=id,name")
    return (f"PROTOCOL_ID=$(curl -s {auth} {lookup} | jq '.result[] | select(.name==\"http\") | .id') && "
            f"printf '%s' {shlex.quote(payload)} | jq -c --argjson p \"$PROTOCOL_ID\" '.[0].protocol_id = $p' | "
            f"{post}--data-binary @- {shlex.quote(base + STREAMS)}")


async def http_protocol_id(client: FlespiClient) -> int:
    """The id of the ``http`` stream protocol."""
    for item in await client.items("stream-protocols", "all", ("id", "name")):
        if item.get("name") == HTTP_PROTOCOL and isinstance(item.get("id"), int):
            return int(item["id"])
    raise FlespiError("flespi lists no stream protocol named 'http'")


@dataclass
class SetupResult:
    """What `set_up_stream` did, in words a user reads."""

    stream_id: int
    created: bool
    changed: list[str] = field(default_factory=list)  # configuration fields that changed
    subscribed: dict[str, str] = field(default_factory=dict)  # kind -> selector
    untouched: list[str] = field(default_factory=list)  # same-named streams of another protocol

    def lines(self) -> list[str]:
        """One line per thing done, for the dialog and `trackmon flespi setup`."""
        if self.created:
            out = [f"created stream {self.stream_id}"]
        elif self.changed:
            out = [f"updated stream {self.stream_id}: {', '.join(self.changed)}"]
        else:
            out = [f"stream {self.stream_id} was already set up as asked"]
        out += [f"subscribed to {kind} {selector}" for kind, selector in self.subscribed.items()]
        out += [f"left alone: {text}" for text in self.untouched]
        return out


def _merged_headers(existing: Any, wanted: dict[str, str]) -> list[dict[str, str]]:
    """The stream's headers with ours set (same name, case-insensitive, replaced) and the
    user's other headers kept in their order."""
    out: list[dict[str, str]] = []
    lowered = {k.lower() for k in wanted}
    for header in existing if isinstance(existing, list) else []:
        if isinstance(header, dict) and str(header.get("name", "")).lower() not in lowered:
            out.append(header)
    out += [{"name": k, "value": v} for k, v in wanted.items()]
    return out


def patch_for(existing: dict[str, Any], spec: StreamSpec) -> tuple[dict[str, Any], list[str]]:
    """The PATCH body that brings ``existing`` to ``spec`` touching nothing else, and the
    names of the fields it changes (empty: nothing to do)."""
    current = existing.get("configuration") if isinstance(existing.get("configuration"), dict) else {}
    wanted: dict[str, Any] = {"uri": spec.uri, "headers": _merged_headers(current.get("headers"), spec.headers)}
    if spec.limit_messages is not None:
        wanted["limit_messages"] = int(spec.limit_messages)
    if spec.ca_pem:
        wanted[CA_FIELD] = spec.ca_pem
    configuration = {k: v for k, v in wanted.items() if current.get(k) != v}
    body: dict[str, Any] = {}
    changed = [f"configuration.{k}" for k in configuration]
    if configuration:
        body["configuration"] = configuration
    if spec.validate_message and existing.get("validate_message") != spec.validate_message:
        body["validate_message"] = spec.validate_message
        changed.append("validate_message")
    return body, changed


async def find_stream(client: FlespiClient, name: str, protocol_id: int) -> tuple[dict[str, Any] | None, list[str]]:
    """The stream called ``name`` with the http protocol, and a description of same-named
    streams of other protocols (never touched)."""
    found = await client.items("streams", name_selector(name), ("id", "name", "protocol_id", "configuration",
                                                               "validate_message"))
    ours = [s for s in found if s.get("name") == name and s.get("protocol_id") == protocol_id]
    others = [f"stream {s.get('id')} named {name!r} has another protocol (id {s.get('protocol_id')})"
              for s in found if s.get("name") == name and s.get("protocol_id") != protocol_id]
    return (min(ours, key=lambda s: int(s["id"])) if ours else None), others


async def set_up_stream(client: FlespiClient, spec: StreamSpec,
                        subscriptions: dict[str, list[str]] | None = None) -> SetupResult:
    """Create the stream or patch the existing one, then subscribe it; returns what was done."""
    protocol_id = await http_protocol_id(client)
    existing, others = await find_stream(client, spec.name, protocol_id)
    if existing is None:
        created = await client.call("POST", STREAMS, body=[stream_body(spec, protocol_id)], fields=("id",))
        if not created or not isinstance(created[0].get("id"), int):
            raise FlespiError("flespi did not return the new stream's id")
        result = SetupResult(int(created[0]["id"]), True, untouched=others)
    else:
        stream_id = int(existing["id"])
        body, changed = patch_for(existing, spec)
        if body:
            await client.call("PATCH", f"{STREAMS}/{stream_id}", body=body, fields=("id",))
        result = SetupResult(stream_id, False, changed, untouched=others)
    for kind, selectors in (subscriptions or {}).items():
        if selectors:
            result.subscribed[kind] = await subscribe(client, result.stream_id, kind, selectors)
    return result


async def subscribe(client: FlespiClient, stream_id: int, kind: str, selectors: list[str]) -> str:
    """Subscribe the stream to ``kind`` (devices, channels, groups) matching each selector (ids
    go together as ``12,34``); returns the selectors used."""
    if kind not in KINDS:
        raise ValueError(f"cannot subscribe a stream to {kind}")
    numeric = [s for s in selectors if s.isdigit()]
    done = [",".join(numeric)] if numeric else []
    done += [s for s in selectors if not s.isdigit()]
    for selector in done:
        await client.call("POST", f"{STREAMS}/{stream_id}/{kind}/{selector}")
    return ", ".join(done)


def duplicate_warning(devices: list[dict[str, Any]], channels: list[dict[str, Any]]) -> str:
    """The KB's warning when both devices and channels are chosen, naming the devices whose
    messages arrive through a chosen channel when flespi told us (telemetry ``channel.id``)."""
    if not devices or not channels:
        return ""
    chosen = {c.get("id") for c in channels}
    both = [d for d in devices if d.get("channel_id") in chosen]
    if both:
        names = ", ".join(str(d.get("name") or d.get("id")) for d in both[:5])
        return (f"{names} also reach{'es' if len(both) == 1 else ''} flespi through a chosen channel: "
                "their messages would arrive twice. Pick either devices or channels.")
    return ("Devices and channels are both chosen: a device whose tracker connects through a chosen "
            "channel would send every message twice (flespi's advice: pick either devices or channels).")


async def device_channels(client: FlespiClient, device_ids: list[int]) -> dict[int, int]:
    """Which channel each device's last message came through (telemetry ``channel.id``), where
    flespi has it. Path documented (flespi-io-js ``/devices/{dev-selector}/telemetry/{selector}``);
    the answer's shape ``{"id", "telemetry": {"channel.id": {"value": ..}}}`` is assumed."""
    if not device_ids:
        return {}
    try:
        items = await client.call("GET", f"/gw/devices/{ids_selector(device_ids)}/telemetry/channel.id")
    except FlespiError:
        return {}
    out: dict[int, int] = {}
    for item in items:
        value = (item.get("telemetry") or {}).get("channel.id") if isinstance(item, dict) else None
        value = value.get("value") if isinstance(value, dict) else value
        if isinstance(item.get("id"), int) and isinstance(value, int):
            out[item["id"]] = value
    return out


def probe_messages(count: int = 2) -> tuple[str, list[dict[str, Any]]]:
    """A marker and a few messages carrying it as their ident and as ``trackmon.test`` (messages
    posted into a device may come out with the device's ident: that flespi keeps a posted ident
    is not documented), to recognise flespi's delivery."""
    marker = f"trackmon-test-{uuid.uuid4().hex[:8]}"
    now = time.time()
    return marker, [{"ident": marker, "timestamp": round(now - count + i, 3), "trackmon.test": marker}
                    for i in range(count)]


async def inject_into_stream(client: FlespiClient, stream_id: int, messages: list[dict[str, Any]]) -> None:
    """Ask flespi to deliver ``messages`` through the stream (``POST /gw/streams/{id}/messages``
    with ``data`` in the query: the parameter is documented, the queueing assumed)."""
    await client.call("POST", f"{STREAMS}/{stream_id}/messages", data=messages)


async def inject_into_device(client: FlespiClient, device_id: int, messages: list[dict[str, Any]]) -> None:
    """Post ``messages`` into a device: flespi stores them and hands them to the streams
    subscribed to it (documented). They stay in the device's history."""
    await client.call("POST", f"/gw/devices/{int(device_id)}/messages", body=messages)
