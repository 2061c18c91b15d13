"""Run one of trackmon's own modules in a child process, whatever directory or install it
runs from: the second core's share of an import, a large export or ingest derivation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

#: The directory holding the `app` package.
_ROOT = str(Path(__file__).resolve().parents[2])


def start_module(module: str, *args: str, **popen: Any) -> subprocess.Popen[bytes]:
    """``python -m module args...`` with this interpreter and this copy of trackmon importable;
    ``popen`` goes to `subprocess.Popen` (pipes, stderr)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", module, *args], env=env, **popen)
