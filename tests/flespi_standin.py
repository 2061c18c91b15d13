"""A stand-in for flespi's REST API on 127.0.0.1 that checks requests the way flespi does, and
plays the parts trackmon uses: stream protocols, streams (create, PATCH, PUT, subscriptions,
logs, queue), devices, channels, groups, device messages, and an HTTP stream that really
delivers its queue to the stream's URI (one batch in flight, re-sent until 200).

Where each recorded shape comes from (read, not copied):

* answers ``{"result": [...]}``, errors ``{"errors": [{"code", "reason"}]}`` with 400 (bad
  request, often a ``schema_hint``), 401 (bad token), 403, 404; ``Authorization: FlespiToken``;
  selectors ``all`` / ``12,34`` / ``field=value`` / ``{expression}``; ``?fields=``; ``data`` for
  messages and logs; POST creates from an array; PATCH patches object fields; PUT replaces the
  fields given; messages paged by time with ``from``/``to``/``count`` — flespi's API guide,
  github.com/flespi-software/skills ``skills/flespi/SKILL.md``.
* the endpoint table (``/stream-protocols/{sel}``, ``/streams``, ``/streams/{sel}``,
  ``/streams/{sel}/devices|channels|groups/{sel}``, ``/streams/{sel}/logs``,
  ``/streams/{sel}/messages``, ``/devices/{sel}/messages``, ``/devices/{sel}/telemetry/{sel}``)
  — flespi-io-js ``src/configs.json``.
* a stream's required ``name`` and numeric ``protocol_id``; top-level ``enabled``, ``queue_ttl``,
  ``validate_message``, ``metadata`` — terraform-provider-flespi ``docs/resources/stream.md`` and
  flespi-client ``resources/gateway/stream/types.go``.
* stream protocol items ``{"id", "name"}`` — flespi Toolbox ``src/store/actions.js``.
* HTTP stream configuration ``uri``, headers, ``limit_messages``, a private CA — flespi KB "How to
  get data in your platform via flespi HTTP stream"; the ``{name, value}`` header list and the CA
  field's name (``ssl_ca``) are NOT from a document: they mirror app/server/flespi_stream.py's
  assumptions, so a test cannot prove them; everything else here is checked independently.
* stream state ``enabled``, ``queue_size``, ``connected`` — flespi KB "How to control account
  limitations"; log records ``read``/``skipped``/``accepted``/``rejected``, ``ack_latency`` — KB
  "Stream — forwarding data"; ``error_text``, ``reason``, ``ident``, ``device_id`` — flespi Toolbox
  ``src/config.js`` and ``LogsListItem.vue``.
* ids (protocol 1 = http, 2 = mqtt; streams from 1000) are this stand-in's, not flespi's.
"""

from __future__ import annotations

import asyncio
import copy
import re
import threading
import time
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import aiohttp
import orjson
from aiohttp import web

TOKEN = "flespi-standin-token"
PROTOCOLS = [{"id": 1, "name": "http"}, {"id": 2, "name": "mqtt"}]
STREAM_FIELDS = {"name": str, "protocol_id": int, "configuration": dict, "enabled": bool, "queue_ttl": int,
                 "validate_message": str, "metadata": dict}
HTTP_CONFIGURATION = {"uri": str, "headers": list, "limit_messages": int, "ssl_ca": str}
#: Largest ``count`` the stand-in serves for device messages (flespi's own cap is not documented).
MAX_COUNT = 100_000


class Refusal(Exception):
    def __init__(self, status: int, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.code = status, reason, code or status


def refuse(status: int, reason: str) -> web.Response:
    return web.json_response({"errors": [{"code": status, "reason": reason}]}, status=status)


def get_path(item: dict[str, Any], dotted: str) -> Any:
    value: Any = item
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return value.get(dotted) if isinstance(value, dict) else None
        value = value[part]
    return value


_TERM = re.compile(r'^\s*([A-Za-z_][\w.]*)\s*==\s*("(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?|true|false)\s*$')


def _term(text: str):
    match = _TERM.match(text)
    if not match:
        raise Refusal(400, f"invalid selector expression near {text.strip()[:40]!r}")
    name, literal = match.group(1), orjson.loads(match.group(2))
    return lambda item: get_path(item, name) == literal


def matcher(selector: str):
    """The item filter of a selector, or a 400 like flespi's for a malformed one."""
    if selector == "all":
        return lambda item: True
    if re.fullmatch(r"\d+(,\d+)*", selector):
        ids = {int(x) for x in selector.split(",")}
        return lambda item: item.get("id") in ids
    if selector.startswith("{") and selector.endswith("}"):
        alternatives = [[_term(t) for t in alt.split("&&")] for alt in selector[1:-1].split("||")]
        return lambda item: any(all(t(item) for t in alt) for alt in alternatives)
    if "=" in selector and not selector.startswith("="):
        name, value = selector.split("=", 1)
        return lambda item: str(get_path(item, name)) == value
    raise Refusal(400, f"invalid selector {selector!r}")


def with_fields(item: dict[str, Any], fields: str | None) -> dict[str, Any]:
    if not fields:
        return copy.deepcopy(item)
    return {name: copy.deepcopy(item[name]) for name in fields.split(",") if name in item}


def check_stream(item: Any, *, creating: bool) -> None:
    """The checks flespi makes of a stream object: known fields, their types, required ones,
    and the configuration against its protocol."""
    if not isinstance(item, dict):
        raise Refusal(400, "stream must be an object")
    for name, value in item.items():
        if name not in STREAM_FIELDS:
            raise Refusal(400, f"unknown field '{name}'")
        wanted = STREAM_FIELDS[name]
        if not isinstance(value, wanted) or (wanted is int and isinstance(value, bool)):
            raise Refusal(400, f"field '{name}' must be of type {wanted.__name__}")
    if creating:
        for name in ("name", "protocol_id"):
            if name not in item:
                raise Refusal(400, f"required field '{name}' is missing")
    protocol = item.get("protocol_id")
    if protocol is not None and protocol not in {p["id"] for p in PROTOCOLS}:
        raise Refusal(400, f"unknown protocol_id {protocol}")
    if protocol == 1:
        check_http_configuration(item.get("configuration"))


def check_http_configuration(configuration: Any) -> None:
    if not isinstance(configuration, dict):
        raise Refusal(400, "configuration is required")
    for name, value in configuration.items():
        if name not in HTTP_CONFIGURATION:
            raise Refusal(400, f"configuration: unknown field '{name}'")
        wanted = HTTP_CONFIGURATION[name]
        if not isinstance(value, wanted) or (wanted is int and isinstance(value, bool)):
            raise Refusal(400, f"configuration.{name} must be of type {wanted.__name__}")
    uri = configuration.get("uri")
    if not isinstance(uri, str) or not uri.startswith(("http://", "https://")):
        raise Refusal(400, "configuration.uri is required and must be an http(s) URI")
    for header in configuration.get("headers", []):
        if (not isinstance(header, dict) or set(header) != {"name", "value"}
                or not all(isinstance(v, str) for v in header.values())):
            raise Refusal(400, "configuration.headers must be a list of {name, value} strings")
    if configuration.get("limit_messages", 1) < 1:
        raise Refusal(400, "configuration.limit_messages must be at least 1")


def _stamp(message: dict[str, Any]) -> float:
    value = message.get("timestamp", 0)
    return float(value) if isinstance(value, int | float) else 0.0


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """JSON merge patch: objects merge key by key, anything else (lists too) replaces."""
    out = copy.deepcopy(target)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_patch(out[key], value)
        elif value is None:
            out.pop(key, None)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass
class Standin:
    """The account's state and the app serving it."""

    streams: dict[int, dict[str, Any]] = field(default_factory=dict)
    devices: dict[int, dict[str, Any]] = field(default_factory=dict)
    channels: dict[int, dict[str, Any]] = field(default_factory=dict)
    groups: dict[int, dict[str, Any]] = field(default_factory=dict)
    messages: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # device id -> stored
    subscriptions: dict[int, dict[str, set[int]]] = field(default_factory=dict)  # stream -> kind -> ids
    queues: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    logs: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    retry_delay: float = 0.2
    unavailable: set[int] = field(default_factory=set)  # devices whose messages answer 503 (tests)
    hold_pages_after: int | None = None  # device-message reads past this many wait until close (tests)
    next_id: int = 1000

    def __post_init__(self) -> None:
        self.app = web.Application()
        self.app.router.add_route("*", "/gw/{tail:.*}", self.handle)
        self._wake: dict[int, asyncio.Event] = {}
        self._tasks: list[asyncio.Task] = []
        self._pages_read = 0
        self._release = asyncio.Event()

    # -- seeding (tests) --------------------------------------------------------------------
    def add_stream(self, item: dict[str, Any]) -> int:
        stream_id = self.next_id
        self.next_id += 1
        self.streams[stream_id] = {"id": stream_id, "enabled": True, **copy.deepcopy(item)}
        return stream_id

    def add_device(self, device_id: int, name: str, ident: str, channel_id: int | None = None) -> None:
        self.devices[device_id] = {"id": device_id, "name": name, "device_type_id": 7,
                                   "configuration": {"ident": ident}, "channel_id": channel_id}
        self.messages.setdefault(device_id, [])

    def store(self, device_id: int, messages: list[dict[str, Any]]) -> None:
        """Messages arrive at a device: stored in time order, handed to the streams subscribed to
        the device, its channel or a group holding it."""
        device = self.devices[device_id]
        added = []
        for message in messages:
            stored = {"ident": device["configuration"]["ident"], "device.id": device_id,
                      "device.name": device["name"], "server.timestamp": message.get("timestamp", time.time()),
                      **message}
            if device.get("channel_id") is not None:
                stored.setdefault("channel.id", device["channel_id"])
            added.append(stored)
        self.messages[device_id].extend(added)
        self.messages[device_id].sort(key=_stamp)
        for stream_id, subs in self.subscriptions.items():
            if (device_id in subs.get("devices", ())
                    or device.get("channel_id") in subs.get("channels", ())
                    or any(device_id in self.groups[g].get("devices", ()) for g in subs.get("groups", ()))):
                self.enqueue(stream_id, added)

    def enqueue(self, stream_id: int, messages: list[dict[str, Any]]) -> None:
        self.queues.setdefault(stream_id, []).extend(copy.deepcopy(messages))
        self._wake.setdefault(stream_id, asyncio.Event()).set()
        if not any(t.get_name() == f"deliver-{stream_id}" for t in self._tasks if not t.done()):
            self._tasks.append(asyncio.get_running_loop().create_task(self._deliver(stream_id),
                                                                      name=f"deliver-{stream_id}"))

    # -- the HTTP stream --------------------------------------------------------------------
    async def _deliver(self, stream_id: int) -> None:
        """One batch in flight, the next only after a reply; re-sent until the target answers 200
        (as the KB article on HTTP streams describes the stream's behaviour)."""
        async with aiohttp.ClientSession() as session:
            while self.queues.get(stream_id):
                stream = self.streams.get(stream_id)
                if stream is None or not stream.get("enabled", True):
                    return
                config = stream.get("configuration", {})
                batch = self.queues[stream_id][: config.get("limit_messages", 1000)]
                headers = {h["name"]: h["value"] for h in config.get("headers", [])}
                headers["Content-Type"] = "application/json"
                started = time.time()
                record: dict[str, Any] = {"timestamp": started, "read": len(batch)}
                try:
                    async with session.post(config["uri"], data=orjson.dumps(batch), headers=headers,
                                            timeout=aiohttp.ClientTimeout(total=10)) as reply:
                        text = await reply.text()
                        status = reply.status
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    status, text = None, str(exc) or type(exc).__name__
                if status == 200:
                    del self.queues[stream_id][: len(batch)]
                    record.update(accepted=len(batch), ack_latency=round(time.time() - started, 3))
                    self.logs.setdefault(stream_id, []).append(record)
                    continue
                record.update(rejected=len(batch), error_text=(f"HTTP {status}: {text[:200]}" if status
                                                               else f"connection failed: {text[:200]}"))
                if status is not None:
                    record["response_code"] = status
                self.logs.setdefault(stream_id, []).append(record)
                await asyncio.sleep(self.retry_delay)

    # -- requests ---------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.calls.append((request.method, unquote(request.path_qs), raw))
        if request.headers.get("Authorization") != f"FlespiToken {TOKEN}":
            return refuse(401, "Token is not valid")
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return refuse(400, "request body is not valid JSON")
        try:
            data = orjson.loads(request.query["data"]) if "data" in request.query else None
        except orjson.JSONDecodeError:
            return refuse(400, "'data' parameter is not valid JSON")
        parts = request.match_info["tail"].split("/")
        if self.hold_pages_after is not None and parts[0] == "devices" and parts[-1] == "messages":
            self._pages_read += 1
            if self._pages_read > self.hold_pages_after:
                await self._release.wait()  # a pull stuck mid-way: the test cancels it meanwhile
        try:
            result = self.route(request.method, parts, body, data, request.query.get("fields"))
        except Refusal as refusal:
            return refuse(refusal.status, refusal.reason)
        return web.Response(body=orjson.dumps({"result": result}), content_type="application/json")

    def route(self, method: str, parts: list[str], body: Any, data: Any, fields: str | None) -> list[Any]:
        kind = parts[0]
        collections = {"devices": self.devices, "channels": self.channels, "groups": self.groups,
                       "streams": self.streams}
        if kind == "stream-protocols" and method == "GET" and len(parts) == 2:
            match = matcher(parts[1])
            return [with_fields(p, fields) for p in PROTOCOLS if match(p)]
        if kind == "streams" and len(parts) == 1 and method == "POST":
            return self.create_streams(body, fields)
        if kind not in collections or len(parts) < 2:
            raise Refusal(404, "no such method")
        match = matcher(parts[1])  # a malformed selector is refused even when nothing would match
        items = [i for i in collections[kind].values() if match(i)]
        if len(parts) == 2:
            if method == "GET":
                return [with_fields(self.live(kind, i), fields) for i in items]
            if kind == "streams" and method in ("PATCH", "PUT"):
                return self.update_streams(items, body, method, fields)
            raise Refusal(404, "no such method")
        sub = parts[2]
        if kind == "streams" and sub in ("devices", "channels", "groups") and len(parts) == 4:
            return self.subscriptions_call(method, items, sub, parts[3])
        if kind == "streams" and sub == "logs" and method == "GET":
            return self.read_logs(items, data)
        if kind == "streams" and sub == "messages" and method == "POST":
            if not isinstance(data, list) or not all(isinstance(m, dict) for m in data):
                raise Refusal(400, "'data' must be an array of message objects")
            for item in items:
                self.enqueue(item["id"], data)
            return []
        if kind == "devices" and sub == "messages":
            return self.device_messages(method, items, body, data)
        if kind == "devices" and sub == "telemetry" and method == "GET":
            return [{"id": d["id"], "telemetry": {"channel.id": {"value": d["channel_id"], "ts": time.time()}}}
                    for d in items if d.get("channel_id") is not None]
        raise Refusal(404, "no such method")

    def live(self, kind: str, item: dict[str, Any]) -> dict[str, Any]:
        if kind != "streams":
            return item
        return {**item, "queue_size": len(self.queues.get(item["id"], [])), "connected": True}

    def create_streams(self, body: Any, fields: str | None) -> list[Any]:
        if not isinstance(body, list):
            raise Refusal(400, "request body must be an array of objects")
        for item in body:
            check_stream(item, creating=True)
        return [with_fields(self.streams[self.add_stream(item)], fields) for item in body]

    def update_streams(self, items: list[dict[str, Any]], body: Any, method: str, fields: str | None) -> list[Any]:
        if not isinstance(body, dict):
            raise Refusal(400, "request body must be an object")
        if "protocol_id" in body:
            raise Refusal(400, "field 'protocol_id' cannot be changed")
        check_stream({k: v for k, v in body.items() if k != "configuration"}, creating=False)
        updated = []
        for item in items:
            # PATCH merges objects field by field; PUT replaces each given field whole.
            new = merge_patch(item, body) if method == "PATCH" else {**item, **copy.deepcopy(body)}
            check_stream({k: v for k, v in new.items() if k != "id"}, creating=True)
            updated.append(new)
        for new in updated:
            self.streams[new["id"]] = new
        return [with_fields(new, fields) for new in updated]

    def subscriptions_call(self, method: str, streams: list[dict[str, Any]], kind: str, selector: str) -> list[Any]:
        pool = {"devices": self.devices, "channels": self.channels, "groups": self.groups}[kind]
        if not streams:
            raise Refusal(404, "stream not found")
        match = matcher(selector)
        chosen = [i for i in pool.values() if match(i)]
        out = []
        for stream in streams:
            subs = self.subscriptions.setdefault(stream["id"], {}).setdefault(kind, set())
            if method == "POST":
                subs.update(i["id"] for i in chosen)
                out += [{"id": i["id"], "stream_id": stream["id"]} for i in chosen]
            elif method == "GET":
                out += [{"id": i, "stream_id": stream["id"]} for i in sorted(subs) if i in {c["id"] for c in chosen}]
            else:
                raise Refusal(404, "no such method")
        return out

    def read_logs(self, streams: list[dict[str, Any]], data: Any) -> list[Any]:
        data = data or {}
        records = [r for s in streams for r in self.logs.get(s["id"], [])]
        records.sort(key=lambda r: r["timestamp"], reverse=bool(data.get("reverse")))
        return copy.deepcopy(records[: int(data.get("count", 1000))])

    def device_messages(self, method: str, devices: list[dict[str, Any]], body: Any, data: Any) -> list[Any]:
        if method == "POST":
            if not isinstance(body, list) or not all(isinstance(m, dict) for m in body):
                raise Refusal(400, "request body must be an array of message objects")
            for device in devices:
                self.store(device["id"], body)
            return []
        if method != "GET":
            raise Refusal(404, "no such method")
        if any(d["id"] in self.unavailable for d in devices):
            raise Refusal(503, "service temporarily unavailable")
        data = data or {}
        unknown = set(data) - {"from", "to", "count", "reverse", "fields", "filter"}
        if unknown:
            raise Refusal(400, f"data: unknown field '{sorted(unknown)[0]}'")
        for name in ("from", "to"):
            if name in data and (not isinstance(data[name], int | float) or isinstance(data[name], bool)):
                raise Refusal(400, f"data.{name} must be a number")
        count = data.get("count", MAX_COUNT)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_COUNT:
            raise Refusal(400, f"data.count must be an integer from 1 to {MAX_COUNT}")
        t_from, t_to = data.get("from", 0), data.get("to", float("inf"))
        reverse = bool(data.get("reverse"))
        found = []
        for device in devices:  # each device's list is kept in time order: cut at most `count` out of it
            stored = self.messages.get(device["id"], [])
            low, high = bisect_left(stored, t_from, key=_stamp), bisect_right(stored, t_to, key=_stamp)
            found += stored[max(low, high - count):high] if reverse else stored[low:min(high, low + count)]
        found.sort(key=_stamp, reverse=reverse)
        return found[:count]  # serialized at once, never changed: no copy needed

    async def close(self) -> None:
        self._release.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError, Exception):
                await task


@dataclass
class RunningStandin:
    url: str
    state: Standin
    loop: asyncio.AbstractEventLoop

    def call(self, function, *args):
        """Run ``function(*args)`` on the stand-in's loop (seeding that enqueues needs the loop)."""
        async def job():
            return function(*args)
        return asyncio.run_coroutine_threadsafe(job(), self.loop).result(10)


@contextmanager
def running_standin() -> Iterator[RunningStandin]:
    """The stand-in on 127.0.0.1 in its own thread and loop, for as long as the block runs."""
    state = Standin()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict[str, Any] = {}

    def serve() -> None:
        asyncio.set_event_loop(loop)

        async def start() -> None:
            # A request of the window's still in flight when the block ends (its loop is not being run
            # while the stand-in stops) must not hold the clean-up for aiohttp's default 60 s.
            runner = web.AppRunner(state.app, shutdown_timeout=2.0)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            box["runner"] = runner
            box["url"] = f"http://127.0.0.1:{runner.addresses[0][1]}"

        loop.run_until_complete(start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True, name="flespi-standin")
    thread.start()
    assert started.wait(10), "stand-in did not start"
    try:
        yield RunningStandin(box["url"], state, loop)
    finally:
        async def stop() -> None:
            await state.close()
            await box["runner"].cleanup()
        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
