"""A live source that needs no tunnel: connect out to an MQTT broker (flespi's, or any) and
record what it publishes, through the same recorder, views and health checks as the HTTP listener.

Never lose a message — how acknowledgement works here:

* topics are subscribed with QoS 1 in a **persistent session** (MQTT 3.1.1, clean session off,
  a fixed client id): the broker keeps the subscriptions while trackmon is away and queues QoS 1
  messages for it (MQTT 3.1.1 §3.1.2.4), and re-sends what was not acknowledged when it comes
  back (§4.4);
* the PUBACK of a message is sent **only after the batch holding it is committed** (or, for a
  bad payload, after its reject row is). aiomqtt (2.5) has no manual acknowledgement of its own;
  the paho-mqtt 2 client underneath it has (``manual_ack_set`` / ``ack``, public paho API), reached
  through aiomqtt's client — `_paho`. PUBACKs go out in the order the PUBLISHes came, as §4.6
  requires;
* while the recording file refuses data (disk full, file gone) the batch is held and retried
  with back-off, unacknowledged; if trackmon dies meanwhile, the broker re-sends it. A message
  received twice (re-sent after a lost PUBACK) is recorded once: the recorder drops messages it
  already holds (`store/seen.py`), whatever batch they come in.

Bad payloads (not JSON, not an object, too deep, too large) are kept as rejects (``method``
``MQTT``, the topic as path) and acknowledged: the broker must not re-send them forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from app.core.jsonscan import first_byte
from app.core.normalize import Message
from app.server import body as bodies
from app.server.limits import Limits
from app.server.listener import BatchCallback, RequestEvent
from app.server.mqtt_config import MqttConfig
from app.server.refusal import Refused
from app.server.reject_capture import MAX_BODY_PREVIEW, MAX_PATH
from app.store.faults import RecordingUnavailable
from app.store.recorder import Recorder, Reject

log = logging.getLogger(__name__)

#: CONNACK codes that mean "your credentials": 3.1.1 (4, 5) and 5.0 (134, 135).
AUTH_CODES = frozenset({4, 5, 134, 135})
SUBSCRIBE_FAILURE = 0x80


@dataclass(frozen=True, slots=True)
class MqttState:
    """What the source is doing, for the window, ``/status`` and ``trackmon record``'s log."""

    phase: str = "stopped"  # stopped | connecting | connected | reconnecting
    broker: str = ""
    detail: str = ""  # why it is reconnecting, or what is held
    retry_at: float | None = None  # Unix time of the next attempt while reconnecting
    topics: tuple[str, ...] = ()  # subscribed (granted) while connected
    auth_failed: bool = False

    def text(self, now: float | None = None) -> str:
        """One line for people: ``reconnecting in 8 s: the broker refused the token ...``."""
        if self.phase == "reconnecting" and self.retry_at is not None:
            seconds = max(0.0, self.retry_at - (time.time() if now is None else now))
            return f"reconnecting in {seconds:.0f} s: {self.detail}"
        if self.phase == "connected":
            held = f"; {self.detail}" if self.detail else ""
            return f"connected to {self.broker}, subscribed to {', '.join(self.topics)}{held}"
        return f"{self.phase} {self.broker}".strip() + (f": {self.detail}" if self.detail else "")


@dataclass(slots=True)
class MqttStats:
    """Totals since the source started."""

    received: int = 0  # PUBLISH packets taken in
    batches: int = 0
    messages: int = 0  # recorded (new)
    duplicates: int = 0  # received again, already recorded
    rejects: int = 0
    connects: int = 0
    last_message_at: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {"received": self.received, "batches": self.batches, "messages": self.messages,
                "duplicates": self.duplicates, "rejects": self.rejects, "connects": self.connects,
                "last_message_at": self.last_message_at}


@dataclass(slots=True)
class _Item:
    message: aiomqtt.Message
    arrived_at: float


@dataclass(slots=True)
class _Sorted:
    """One batch of publishes split into what is recorded and what is refused."""

    payloads: list[bytes] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


StateCallback = Callable[[MqttState], None]


def _paho(client: aiomqtt.Client) -> Any:
    """The paho-mqtt client inside aiomqtt's (for manual acknowledgement, see module doc)."""
    paho = getattr(client, "_client", None)
    if paho is None or not hasattr(paho, "manual_ack_set"):
        raise RuntimeError("this aiomqtt version hides paho-mqtt's client: acknowledgement after commit is "
                           "impossible; pin aiomqtt 2.x")
    return paho


class MqttSource:
    """Subscribes, batches publishes, records them, acknowledges them; reconnects with back-off."""

    def __init__(self, recorder: Recorder, config: MqttConfig, *, limits: Limits | None = None) -> None:
        self.recorder = recorder
        self.config = config
        self.limits = limits or Limits()
        self.stats = MqttStats()
        self.state = MqttState(broker=config.broker.url)
        self._batch_callbacks: list[BatchCallback] = []
        self._state_callbacks: list[StateCallback] = []
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._holding = False  # a batch is waiting for the file to take data again

    # -- observers ---------------------------------------------------------------------------
    def on_batch(self, callback: BatchCallback) -> None:
        """``callback(event, messages)`` after each committed batch, like `Listener.on_batch`."""
        self._batch_callbacks.append(callback)

    def on_state(self, callback: StateCallback) -> None:
        """``callback(state)`` whenever the state changes."""
        self._state_callbacks.append(callback)

    def status(self) -> dict[str, Any]:
        """What ``GET /status`` shows under ``mqtt``."""
        s = self.state
        return {"state": s.phase, "broker": s.broker, "detail": s.detail, "retry_at": s.retry_at,
                "topics": list(s.topics or self.config.topics), "auth_failed": s.auth_failed,
                "text": s.text(), **self.stats.as_json()}

    def _set(self, **changes: Any) -> None:
        self.state = replace(self.state, **changes)
        for callback in self._state_callbacks:
            callback(self.state)

    # -- lifetime ----------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask `run` to finish: the batch being recorded is finished first."""
        self._stop.set()
        self._wake.set()

    async def run(self) -> None:
        """Connect, subscribe and record until `stop`; every failure ends in a reconnect after a
        growing pause (``first_backoff`` doubling up to ``max_backoff``), reset once connected."""
        config = self.config
        backoff = config.first_backoff
        while not self._stop.is_set():
            self._set(phase="connecting", detail="", retry_at=None, topics=())
            try:
                client = aiomqtt.Client(
                    config.broker.host, config.broker.port, username=config.token or None,
                    password=config.password or None, identifier=config.client_id, clean_session=False,
                    keepalive=config.keepalive, tls_context=config.ssl_context(), timeout=config.connect_timeout,
                    logger=log)
                _paho(client).manual_ack_set(True)
                async with client:
                    self.stats.connects += 1
                    # Read at once: a resumed session's queued messages arrive before the SUBACK,
                    # and a broker may wait for their PUBACKs before it answers the SUBSCRIBE.
                    pump = asyncio.create_task(self._pump(client))
                    try:
                        granted = await client.subscribe([(topic, config.qos) for topic in config.topics])
                        refused = [t for t, g in zip(config.topics, granted, strict=False)
                                   if int(getattr(g, "value", g)) >= SUBSCRIBE_FAILURE]
                        if refused:
                            raise _SubscribeRefused(refused)
                        self._set(phase="connected", topics=config.topics, auth_failed=False)
                        backoff = config.first_backoff
                        await pump
                    finally:
                        if not pump.done():
                            pump.cancel()
                        await asyncio.gather(pump, return_exceptions=True)
                reason = "disconnected"
                auth_failed = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure is a reason to reconnect, said in words
                reason, auth_failed = describe_failure(exc)
                log.info("MQTT %s: %s", config.broker.url, reason)
            if self._stop.is_set():
                break
            self._set(phase="reconnecting", detail=reason, retry_at=time.time() + backoff, topics=(),
                      auth_failed=auth_failed)
            await self._pause(backoff)
            backoff = min(config.max_backoff, backoff * 2)
        self._set(phase="stopped", detail="", retry_at=None, topics=())

    async def _pause(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    # -- receiving ---------------------------------------------------------------------------
    async def _pump(self, client: aiomqtt.Client) -> None:
        """Read publishes into batches and commit them one after the other (the next batch
        fills while one is being written). Returns on `stop`; raises when the connection drops,
        after recording what had arrived (its PUBACKs cannot go out; the broker re-sends, and
        the recorder keeps one copy)."""
        pending: list[_Item] = []
        arrived = asyncio.Event()

        async def read() -> None:
            async for message in client.messages:
                pending.append(_Item(message, time.time()))
                self.stats.received += 1
                arrived.set()
                if self._holding and len(pending) > self.config.max_held:  # the file refuses data
                    raise _HeldTooMuch(len(pending))

        reader = asyncio.create_task(read())
        reader.add_done_callback(lambda _task: self._wake.set())  # ends a hold's pause at once
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            while True:
                if not pending:
                    arrived.clear()
                    waiter = asyncio.ensure_future(arrived.wait())
                    await asyncio.wait({waiter, reader, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                if self._stop.is_set():
                    return  # what is pending is not acknowledged: the broker keeps it for the next run
                if not pending:
                    reader.result()  # the connection dropped: raise its error
                    raise aiomqtt.MqttError("the broker ended the subscription")
                await self._gather(pending, arrived, reader)
                batch = pending[:self.config.batch_max]
                del pending[:len(batch)]
                if not await self._commit(client, batch, reader, pending):
                    if self._stop.is_set():
                        return  # stopped while the file refused data: nothing acknowledged
                    reader.result()  # disconnected, or held too much, while the file refused data
                    raise aiomqtt.MqttError("the broker ended the subscription")
        finally:
            stopping.cancel()
            reader.cancel()
            await asyncio.gather(reader, stopping, return_exceptions=True)

    async def _gather(self, pending: list[_Item], arrived: asyncio.Event, reader: asyncio.Task) -> None:
        """Wait until the batch is full, old enough, or the publishes pause (see `MqttConfig`)."""
        config = self.config
        deadline = asyncio.get_running_loop().time() + config.batch_wait
        while len(pending) < config.batch_max and not reader.done() and not self._stop.is_set():
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            arrived.clear()
            try:
                await asyncio.wait_for(arrived.wait(), timeout=min(config.batch_idle, left))
            except TimeoutError:
                return

    def _sort(self, batch: list[_Item], received_at: float) -> _Sorted:
        """Each payload checked alone, with the listener's rules (`server/body`): a JSON object
        within the depth limit, at most ``max_payload`` bytes."""
        out = _Sorted()
        limit = self.config.max_payload
        for item in batch:
            payload = _payload_bytes(item.message.payload)
            topic = str(item.message.topic)
            try:
                if len(payload) > limit:
                    raise Refused(413, "too_large", f"payload of {len(payload)} bytes exceeds the limit of {limit}")
                if first_byte(payload) != ord("{"):
                    raise Refused(422, "not_a_message", "payload is not a JSON object (one message per publish)")
                parsed = bodies.read_batch(payload, "", received_at, self.limits, limit)
            except Refused as refused:
                out.rejects.append(Reject(
                    item.arrived_at, self.config.broker.url, "MQTT", topic[:MAX_PATH], refused.status,
                    f"MQTT payload on {topic[:MAX_PATH]}: {refused.reason}",
                    {"topic": topic[:MAX_PATH], "qos": str(item.message.qos)},
                    payload[:MAX_BODY_PREVIEW], len(payload)))
                continue
            out.payloads.append(payload)
            out.messages.extend(parsed.messages)
        return out

    async def _commit(self, client: aiomqtt.Client, batch: list[_Item], reader: asyncio.Task | None = None,
                      waiting: list[_Item] | None = None) -> bool:
        """Record ``batch`` (rejects first, then the messages as one batch), then acknowledge
        every publish in it, in order. While the file refuses data, retry with back-off; returns
        False (nothing acknowledged) if stopped meanwhile, or if the connection ended or more
        than ``max_held`` messages piled up behind the batch: then the broker keeps them all
        (unacknowledged, in the persistent session) until the next connection."""
        started = time.perf_counter()
        received_at = batch[0].arrived_at
        sorted_ = self._sort(batch, received_at)
        body = b"[" + b",".join(sorted_.payloads) + b"]"
        backoff = self.config.first_backoff
        rejects_done = 0
        result = None
        while True:
            try:
                while rejects_done < len(sorted_.rejects):
                    await self.recorder.record_reject(sorted_.rejects[rejects_done])
                    rejects_done += 1
                if sorted_.payloads:
                    result = await self.recorder.record_batch(
                        received_at=received_at, peer=self.config.broker.url, wire_bytes=len(body), body=body,
                        messages=sorted_.messages, process_ms=(time.perf_counter() - started) * 1000.0)
                break
            except Exception as exc:  # not recorded: hold the batch, unacknowledged, and try again
                reason = str(exc) if isinstance(exc, RecordingUnavailable) else f"internal error: {exc!r}"
                if not isinstance(exc, RecordingUnavailable):
                    log.exception("could not record an MQTT batch")
                self._holding = True
                self._set(detail=f"holding {len(batch)} messages, not recorded: {reason}")
                await self._pause(backoff)
                if self._stop.is_set() or (reader is not None and reader.done()):
                    self._holding = False
                    return False
                held = len(batch) + (len(waiting) if waiting is not None else 0)
                if held > self.config.max_held:
                    self._holding = False
                    raise _HeldTooMuch(held) from exc
                backoff = min(self.config.max_backoff, backoff * 2)
        self._holding = False
        if self.state.detail:
            self._set(detail="")
        paho = _paho(client)
        for item in batch:
            if item.message.qos > 0:
                paho.ack(item.message.mid, item.message.qos)  # fails quietly on a dropped connection
        stats = self.stats
        stats.rejects += len(sorted_.rejects)
        stats.last_message_at = batch[-1].arrived_at
        if result is None:
            return True
        stats.duplicates += result.duplicates
        if not result.duplicate:
            stats.batches += 1
            stats.messages += result.new
        event = RequestEvent(received_at, self.config.broker.url, "mqtt", 200, result.count, len(body),
                             (time.perf_counter() - started) * 1000.0,
                             f"{result.duplicates} re-sent messages already recorded" if result.duplicates else "",
                             result.batch_id, result.duplicate)
        if not result.duplicate:
            for callback in self._batch_callbacks:
                callback(event, list(result.messages))
        return True


class _HeldTooMuch(Exception):
    def __init__(self, held: int) -> None:
        super().__init__(f"held {held:,} messages the recording file would not take: disconnected, so the broker "
                         "keeps them until it can")


class _SubscribeRefused(Exception):
    def __init__(self, topics: list[str]) -> None:
        super().__init__(f"the broker refused the subscription to {', '.join(topics)} "
                         "(does the token's ACL allow it?)")


def describe_failure(exc: BaseException) -> tuple[str, bool]:
    """Why a connection failed or ended, in words, and whether the credentials were refused."""
    if isinstance(exc, aiomqtt.MqttCodeError):
        code = getattr(exc.rc, "value", exc.rc)
        if isinstance(exc, MqttConnectError) and code in AUTH_CODES:
            return (f"the broker refused the credentials ({exc}); check the token (flespi: a valid token as the "
                    "username, no password)"), True
        return f"{exc}", False
    if isinstance(exc, (_SubscribeRefused, _HeldTooMuch)):
        return str(exc), False
    text = str(exc) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return f"the broker's TLS certificate was not trusted ({text}); give its CA with --mqtt-cafile", False
    if isinstance(exc, aiomqtt.MqttError) and "timed out" in text.lower():
        return f"no answer from the broker ({text})", False
    return f"{type(exc).__name__}: {text}", False


def _payload_bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, bytearray):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode()
    return b"" if payload is None else str(payload).encode()
