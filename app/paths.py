"""Where trackmon keeps its files (recordings, certificate, known SSH hosts)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def data_dir() -> Path:
    """The per-user data directory; TRACKMON_DATA_DIR overrides it (tests, portable set-ups)."""
    override = os.environ.get("TRACKMON_DATA_DIR")
    return Path(override) if override else Path(platformdirs.user_data_dir("trackmon", appauthor=False))


def default_db() -> Path:
    """Where recordings go when no file is named."""
    return data_dir() / "trackmon.sqlite"
