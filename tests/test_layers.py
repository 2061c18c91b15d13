"""The import rules of docs/architecture.md, checked on the source: imports point inward
(cli → ui → server/store → core), core imports nothing of the app, only app/ui imports Qt."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app"
LAYER = {"core": 0, "paths": 0, "store": 1, "server": 1, "ui": 2, "cli": 3, "__main__": 3}


def imports() -> list[tuple[str, str, str]]:
    """(module path, its layer, imported module) for every import in app/, lazy ones included."""
    found = []
    for path in APP.rglob("*.py"):
        relative = path.relative_to(APP)
        layer = relative.parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.append((str(relative), layer, node.module))
            elif isinstance(node, ast.Import):
                found.extend((str(relative), layer, alias.name) for alias in node.names)
    return found


def test_imports_point_inward() -> None:
    outward = [(path, module) for path, layer, module in imports()
               if module.startswith("app.") and layer in LAYER
               and LAYER.get(module.split(".")[1], -1) > LAYER[layer]]
    assert outward == []


def test_core_imports_nothing_of_the_app_and_only_ui_imports_qt() -> None:
    found = imports()
    assert [(p, m) for p, layer, m in found if layer == "core" and m.startswith("app.") and
            not m.startswith("app.core")] == []
    assert [(p, m) for p, layer, m in found if m.startswith(("PySide6", "qasync", "pyqtgraph"))
            and layer != "ui"] == []
