"""Starting the window: the errors a user can hit before it opens, and persisted settings."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from PySide6.QtCore import QSettings

from app.ui import launch
from app.ui.settings import AppSettings, load_settings, save_settings
from tests.processes import ROOT


def test_no_display_is_a_one_line_error_pointing_to_record() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    result = subprocess.run([sys.executable, "-m", "app"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "no display" in result.stderr and "trackmon record" in result.stderr


def test_window_options_work_without_the_gui_command() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    for words in (["--port", "9000"], ["-v", "--db", "x.sqlite"], ["gui", "--port", "9000"]):
        result = subprocess.run([sys.executable, "-m", "app", *words], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 1 and "no display" in result.stderr, words  # parsed, reached the window
    helped = subprocess.run([sys.executable, "-m", "app", "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert helped.returncode == 0 and "COMMAND" in helped.stdout


def test_root_disables_the_webengine_sandbox_and_says_so(monkeypatch, caplog) -> None:
    monkeypatch.delenv("QTWEBENGINE_DISABLE_SANDBOX", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with caplog.at_level(logging.WARNING):
        launch.prepare_webengine()
    assert os.environ["QTWEBENGINE_DISABLE_SANDBOX"] == "1"
    assert "sandbox disabled" in caplog.text
    monkeypatch.delenv("QTWEBENGINE_DISABLE_SANDBOX")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    launch.prepare_webengine()
    assert "QTWEBENGINE_DISABLE_SANDBOX" not in os.environ


def test_settings_persist_and_a_first_run_gets_a_token(qapp, tmp_path) -> None:
    store = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    first = load_settings(store)
    assert (tmp_path / "settings.ini").stat().st_mode & 0o777 == 0o600  # it holds the token
    assert len(first.token) >= 20 and first.require_token
    assert load_settings(store).token == first.token  # generated once, then kept
    changed = AppSettings(host="0.0.0.0", port=9000, path="/flespi", token="t", require_token=False,
                          stale_after=30, offline_after=300, trail_length=50, tile_url="")
    save_settings(store, changed)
    again = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    assert load_settings(again) == changed


def test_a_world_readable_settings_file_from_an_older_version_is_closed_on_load(qapp, tmp_path) -> None:
    path = tmp_path / "old.ini"
    path.write_text("[General]\ntoken=older-secret-token-123456\n")
    path.chmod(0o644)
    assert load_settings(QSettings(str(path), QSettings.Format.IniFormat)).token == "older-secret-token-123456"
    assert path.stat().st_mode & 0o777 == 0o600


def test_missing_x11_libraries_are_named_as_debian_packages() -> None:
    assert launch.debian_package("libxcb-icccm.so.4") == "libxcb-icccm4"
    assert launch.debian_package("libxkbcommon-x11.so.0") == "libxkbcommon-x11-0"
    assert launch.debian_package("libxcb-cursor.so.0") == "libxcb-cursor0"
    missing = launch.missing_x11_packages()  # what this machine lacks, read from Qt's own plugin
    assert all(name.startswith("lib") and ".so" not in name for name in missing)


def test_settings_dialog_refuses_unsafe_or_broken_choices(qtbot, tmp_path) -> None:
    from app.ui.settings_dialog import SettingsDialog
    dialog = SettingsDialog(AppSettings(token="t0k"))
    qtbot.addWidget(dialog)  # closed and deleted with the test, not left to PySide's exit clean-up
    dialog.host.setCurrentText("0.0.0.0")
    dialog.require_token.setChecked(False)
    dialog._accept()
    assert "requires a token" in dialog.problem.text() and not dialog.result()
    dialog.require_token.setChecked(True)
    dialog.path.setText("/status")
    dialog._accept()
    assert "/status" in dialog.problem.text()
    dialog.path.setText("/flespi")
    dialog.offline.setValue(10)
    dialog.stale.setValue(60)
    dialog._accept()
    assert "Offline after" in dialog.problem.text()
    dialog.offline.setValue(600)
    dialog.tls_mode.setCurrentIndex(dialog.tls_mode.findData("files"))
    dialog.tls_cert.setText(str(tmp_path / "missing.pem"))
    dialog._accept()
    assert "certificate file" in dialog.problem.text()
    dialog.tls_mode.setCurrentIndex(dialog.tls_mode.findData("self-signed"))
    dialog._accept()
    assert dialog.result() == dialog.DialogCode.Accepted
    chosen = dialog.result_settings()
    assert (chosen.host, chosen.path, chosen.auth_token) == ("0.0.0.0", "/flespi", "t0k")
    assert chosen.tls_mode == "self-signed"
