"""How the map is drawn where there is no GPU.

On a machine whose OpenGL is a software rasteriser (Mesa's llvmpipe under Xvfb, VNC, many VMs),
QtWebEngine's GPU compositing is emulated on the CPU: measured with the demo feed (12 msg/s, see
benchmarks/demo_cpu.py and docs/benchmarks.md) llvmpipe alone took ~48 % of a core. Qt Quick's
software adaptation plus Chromium's software compositing (``--disable-gpu``) draw the same page
for a fraction of that. With a real GPU nothing changes. ``TRACKMON_RENDERING=gpu`` or
``software`` overrides the choice.

Documented: ``QQuickWindow.setGraphicsApi`` must be called before the first Qt Quick window
(QtWebEngine's view is one) — Qt docs "Scene Graph Adaptations"; QtWebEngine supports the
software adaptation ("Qt WebEngine Platform Notes"). Chromium reads QTWEBENGINE_CHROMIUM_FLAGS
when QtWebEngine starts (first profile), so this runs after QApplication, before the window.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swrast", "software rasterizer", "basic render")
GL_RENDERER = 0x1F01


def gl_renderer() -> str | None:
    """The OpenGL renderer's name on this display, or None when there is no usable OpenGL."""
    from PySide6.QtGui import QOffscreenSurface, QOpenGLContext
    context = QOpenGLContext()
    if not context.create():
        return None
    surface = QOffscreenSurface()
    surface.create()
    try:
        if not context.makeCurrent(surface):
            return None
        name = context.functions().glGetString(GL_RENDERER)
        context.doneCurrent()
        return str(name) if name else None
    finally:
        surface.destroy()


def needs_software(renderer: str | None, choice: str = "auto") -> bool:
    """Whether to draw in software: asked for, or OpenGL is missing or itself software."""
    if choice in ("gpu", "software"):
        return choice == "software"
    return renderer is None or any(word in renderer.lower() for word in SOFTWARE_RENDERERS)


def choose_rendering() -> str:
    """Pick the map's rendering for this display (call after QApplication, before any window);
    returns what was chosen, in words, for the log."""
    choice = os.environ.get("TRACKMON_RENDERING", "auto").strip().lower()
    renderer = None if choice in ("gpu", "software") else gl_renderer()
    if not needs_software(renderer, choice):
        return f"GPU rendering ({renderer or 'asked for'})"
    from PySide6.QtQuick import QQuickWindow, QSGRendererInterface
    QQuickWindow.setGraphicsApi(QSGRendererInterface.GraphicsApi.Software)
    flags = os.environ.get("QTWEBENGINE_CHROMIUM_FLAGS", "")
    if "--disable-gpu" not in flags.split():
        os.environ["QTWEBENGINE_CHROMIUM_FLAGS"] = (flags + " --disable-gpu").strip()
    reason = "asked for" if choice == "software" else f"OpenGL here is {renderer or 'unavailable'}"
    log.info("software rendering for the map: %s", reason)
    return f"software rendering ({reason})"
