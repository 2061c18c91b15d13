"""Settings that persist between runs (QSettings), and the command-line overrides for one run."""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings

OSM_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
OSM_ATTRIBUTION = "© OpenStreetMap contributors"


@dataclass(frozen=True, slots=True)
class AppSettings:
    """What the user can change in the Settings dialog."""

    host: str = "127.0.0.1"
    port: int = 8585
    path: str = "/"
    token: str = ""
    require_token: bool = True
    stale_after: float = 60.0
    offline_after: float = 600.0
    trail_length: int = 200
    tile_url: str = OSM_TILES
    mbtiles: str = ""
    tls_mode: str = "off"  # "off", "self-signed" or "files"
    tls_cert: str = ""
    tls_key: str = ""
    ssh_target: str = ""  # user@host[:port]
    ssh_key: str = ""
    ssh_remote_port: int = 8585
    ssh_announce: bool = False
    flespi_api: str = "https://flespi.io"

    @property
    def auth_token(self) -> str | None:
        """The token the listener requires, or None when authentication is off."""
        return self.token if self.require_token and self.token else None


def new_token() -> str:
    """A fresh random token for the Authorization header."""
    return secrets.token_urlsafe(18)


def load_settings(store: QSettings) -> AppSettings:
    """Read saved settings; a first run gets (and saves) a generated token."""
    defaults = AppSettings()
    values: dict[str, Any] = {}
    for item in fields(AppSettings):
        default = getattr(defaults, item.name)
        raw = store.value(item.name, default)
        try:
            if isinstance(default, bool):
                values[item.name] = raw if isinstance(raw, bool) else str(raw).lower() == "true"
            else:
                values[item.name] = type(default)(raw)
        except (TypeError, ValueError):
            values[item.name] = default
    settings = AppSettings(**values)
    if not settings.token:
        settings = replace(settings, token=new_token())
        save_settings(store, settings)
    restrict_to_owner(store)  # a file written by an older trackmon may still be world-readable
    return settings


def save_settings(store: QSettings, settings: AppSettings) -> None:
    """Persist every setting. The file holds the listener's token, so only its owner may read it."""
    for item in fields(AppSettings):
        store.setValue(item.name, getattr(settings, item.name))
    store.sync()
    restrict_to_owner(store)


def restrict_to_owner(store: QSettings) -> None:
    """Make the settings file readable and writable by its owner only (0600): QSettings writes
    it with the process's umask, usually world-readable, and it holds a secret."""
    path = Path(store.fileName())
    if os.name != "posix" or not path.is_absolute():  # Windows: registry and ACLs, not modes
        return
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)


@dataclass(slots=True)
class RunOverrides:
    """Settings given on the command line (``--port``, ``--host``, ``--path``, ``--token``): in
    force for this run only, as the README promises, so confirming the Settings dialog never
    saves them. A field the user then changes in the dialog is theirs, and saved."""

    values: dict[str, Any]  # the command line's value per field
    saved: dict[str, Any]  # what the settings file holds for those fields

    @classmethod
    def over(cls, settings: AppSettings, values: dict[str, Any]) -> tuple[AppSettings, RunOverrides]:
        """``settings`` with ``values`` applied, and the record of what was overridden."""
        saved = {name: getattr(settings, name) for name in values}
        return replace(settings, **values), cls(dict(values), saved)

    def persistent(self, new: AppSettings) -> AppSettings:
        """What to save for ``new``: overridden fields the user left alone keep their saved value."""
        for name in [n for n, value in self.values.items() if getattr(new, n) != value]:
            del self.values[name], self.saved[name]  # changed in the dialog: the user's choice now
        return replace(new, **self.saved)

    def describe(self) -> str:
        """'port 9000, path /x' — for the Settings dialog's note ('' when nothing is overridden)."""
        shown = {name: ("(given)" if name == "token" else value) for name, value in self.values.items()
                 if name != "require_token"}
        return ", ".join(f"{name} {value}" for name, value in shown.items())
