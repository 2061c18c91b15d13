"""The window's MQTT source settings, kept in the same QSettings file as the rest (owner-only:
it holds the broker token) under ``mqtt/``."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

from PySide6.QtCore import QSettings

from app.server.mqtt_config import (
    FLESPI_ALL_DEVICES,
    FLESPI_BROKER,
    MqttConfig,
    default_client_id,
    parse_broker_url,
)
from app.ui.settings import restrict_to_owner

PREFIX = "mqtt/"
#: Used when no token is saved (the same variables `trackmon record --mqtt` reads).
TOKEN_ENVS = ("TRACKMON_MQTT_TOKEN", "FLESPI_TOKEN")


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """What the MQTT dialog edits. ``topics`` one filter per line."""

    enabled: bool = False
    broker: str = FLESPI_BROKER
    topics: str = FLESPI_ALL_DEVICES
    token: str = ""
    cafile: str = ""
    client_id: str = ""

    def topic_list(self) -> tuple[str, ...]:
        return tuple(line.strip() for line in self.topics.splitlines() if line.strip())

    def config(self, recording: Path) -> MqttConfig:
        """The source's configuration; ValueError says what is wrong."""
        broker = parse_broker_url(self.broker)
        cafile = Path(self.cafile).expanduser() if self.cafile.strip() else None
        if cafile is not None and not cafile.is_file():
            raise ValueError(f"no CA file at {cafile}")
        token = self.token.strip() or next((os.environ[n].strip() for n in TOKEN_ENVS if os.environ.get(n)), "")
        return MqttConfig(broker, self.topic_list(), token=token, cafile=cafile,
                          client_id=self.client_id.strip() or default_client_id(recording))


def load_mqtt_settings(store: QSettings | None) -> MqttSettings:
    """Saved MQTT settings (defaults without a store, as in tests)."""
    if store is None:
        return MqttSettings()
    values = {}
    for item in fields(MqttSettings):
        default = item.default
        raw = store.value(PREFIX + item.name, default)
        if isinstance(default, bool):
            values[item.name] = raw if isinstance(raw, bool) else str(raw).lower() == "true"
        else:
            values[item.name] = str(raw)
    return MqttSettings(**values)


def save_mqtt_settings(store: QSettings | None, settings: MqttSettings) -> None:
    """Persist (nothing without a store)."""
    if store is None:
        return
    for item in fields(MqttSettings):
        store.setValue(PREFIX + item.name, getattr(settings, item.name))
    store.sync()
    restrict_to_owner(store)
