"""Where and how the MQTT source connects: broker URL, topics, token, TLS, batching, back-off.

What flespi documents (flespi.com/kb/how-to-consume-telematics-hub-messages-via-mqtt and
flespi.com/kb/mqtt-topics, read 2026-11):

* the broker is ``mqtt.flespi.io``: port 8883 for MQTT over TLS, 1883 without TLS (443/80 are
  WebSockets, not supported here);
* the flespi token is the MQTT *username*, the password is left empty;
* ``flespi/message/gw/devices/{id}`` carries each new message of device ``{id}`` (``+`` for
  every device the token may see), ``flespi/message/gw/channels/{id}/+`` those of a channel;
* MQTT 3.1, 3.1.1 and 5.0 clients are accepted.

What is assumed, not documented there: each PUBLISH on a device-message topic carries one
message as a JSON object in flespi's flat notation (what the topic description and flespi's
own tools show); flespi keeps a persistent session (clean session off) and queues QoS 1
messages for it while the client is away, as MQTT 3.1.1 §3.1.2.4 requires of any broker, within
limits its account type sets.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

FLESPI_BROKER = "mqtts://mqtt.flespi.io"
#: Every device message the token may see (documented topic, ``+`` for the device id).
FLESPI_ALL_DEVICES = "flespi/message/gw/devices/+"
PLAIN_PORT = 1883
TLS_PORT = 8883
SCHEMES = {"mqtt": False, "mqtts": True}


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """A broker to connect out to; ``tls`` for ``mqtts://``."""

    host: str
    port: int
    tls: bool

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_broker_url(text: str) -> BrokerAddress:
    """``mqtt[s]://HOST[:PORT]`` → a `BrokerAddress` (default ports 1883 / 8883). Raises
    ValueError with what is wrong: another scheme, no host, a path, credentials in the URL."""
    parts = urlsplit(text.strip())
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"broker URL must start with mqtt:// or mqtts://, got {text!r}")
    if parts.username or parts.password:
        raise ValueError("put no credentials in the broker URL: the token comes from a file or an environment "
                         "variable")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"a broker URL has no path or query: {text!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port in {text!r}: {exc}") from None
    host = parts.hostname
    if not host:
        raise ValueError(f"no host in {text!r}")
    tls = SCHEMES[scheme]
    return BrokerAddress(host, port or (TLS_PORT if tls else PLAIN_PORT), tls)


def check_topic_filter(topic: str) -> str:
    """A valid MQTT topic filter (MQTT 3.1.1 §4.7: ``#`` last and alone in its level, ``+``
    alone in its level, no NUL), or ValueError."""
    if not topic or "\x00" in topic or len(topic.encode()) > 65535:
        raise ValueError(f"not a topic filter: {topic!r}")
    levels = topic.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise ValueError(f"'#' must be a whole last level in {topic!r}")
        if "+" in level and level != "+":
            raise ValueError(f"'+' must be a whole level in {topic!r}")
    return topic


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """Everything the source needs; see the module doc for what flespi expects.

    ``client_id`` names the persistent session: the broker keeps the subscriptions and queues
    QoS 1 messages under it while trackmon is away, so it must stay the same across runs.
    Batching: a batch is committed once it holds ``batch_max`` messages, its first message has
    waited ``batch_wait`` s, or nothing new came for ``batch_idle`` s (a broker that waits for
    acknowledgements before sending more would otherwise be held up for ``batch_wait`` each time).
    """

    broker: BrokerAddress
    topics: tuple[str, ...]
    token: str = ""
    password: str = ""
    cafile: Path | None = None
    client_id: str = "trackmon"
    qos: int = 1
    keepalive: int = 30
    batch_max: int = 1000
    batch_wait: float = 0.15
    batch_idle: float = 0.02
    max_payload: int = 1024 * 1024
    #: Messages held in memory while the recording file refuses data; past it the connection is
    #: closed and the broker keeps the rest (unacknowledged) until trackmon can record again.
    max_held: int = 100_000
    first_backoff: float = 1.0
    max_backoff: float = 60.0
    connect_timeout: float = 15.0
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.topics:
            raise ValueError("subscribe to at least one topic (e.g. " + FLESPI_ALL_DEVICES + ")")
        for topic in self.topics:
            check_topic_filter(topic)
        if self.qos not in (0, 1):
            raise ValueError("QoS must be 0 or 1")
        if not self.client_id or len(self.client_id) > 128:
            raise ValueError("the client id must be 1-128 characters")

    def ssl_context(self) -> ssl.SSLContext | None:
        """Verifying TLS (system CAs, or ``cafile`` alone when given) for ``mqtts://``."""
        if not self.broker.tls:
            return None
        context = ssl.create_default_context(cafile=str(self.cafile) if self.cafile else None)
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        return context


def default_client_id(recording: Path) -> str:
    """A client id that stays the same for this machine and recording file (so the broker's
    persistent session is found again) and differs between them (two trackmons sharing one
    id would take each other's session over)."""
    import hashlib
    import socket
    seed = f"{socket.gethostname()}\0{recording.resolve()}".encode()
    return "trackmon-" + hashlib.blake2b(seed, digest_size=6).hexdigest()
