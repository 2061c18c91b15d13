"""The Settings dialog: listener, token, thresholds, trails and map tiles."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from app.ui.settings import OSM_TILES, AppSettings, new_token


class SettingsDialog(QDialog):
    """Edits a copy of the settings; `result_settings` returns it when accepted."""

    def __init__(self, settings: AppSettings, parent=None, *, overridden: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("trackmon settings")
        self.original = settings
        self.host = QComboBox(editable=True)
        self.host.addItems(["127.0.0.1", "0.0.0.0"])
        self.host.setCurrentText(settings.host)
        self.port = QSpinBox(minimum=0, maximum=65535, value=settings.port)
        self.path = QLineEdit(settings.path)
        self.token = QLineEdit(settings.token)
        regenerate = QPushButton("Regenerate")
        regenerate.clicked.connect(lambda: self.token.setText(new_token()))
        token_row = QHBoxLayout()
        token_row.addWidget(self.token, 1)
        token_row.addWidget(regenerate)
        self.require_token = QCheckBox("Require 'Authorization: Bearer <token>'")
        self.require_token.setChecked(settings.require_token)
        self.stale = QDoubleSpinBox(minimum=1, maximum=86400, decimals=0, suffix=" s", value=settings.stale_after)
        self.offline = QDoubleSpinBox(minimum=1, maximum=864000, decimals=0, suffix=" s",
                                      value=settings.offline_after)
        self.trail = QSpinBox(minimum=2, maximum=100_000, value=settings.trail_length)
        self.tiles = QLineEdit(settings.tile_url)
        self.tiles.setPlaceholderText("empty: no tiles (offline grid)")
        osm = QPushButton("OpenStreetMap")
        osm.clicked.connect(lambda: self.tiles.setText(OSM_TILES))
        tiles_row = QHBoxLayout()
        tiles_row.addWidget(self.tiles, 1)
        tiles_row.addWidget(osm)
        self.mbtiles = QLineEdit(settings.mbtiles)
        self.mbtiles.setPlaceholderText("none")
        self.mbtiles.setReadOnly(True)
        choose = QPushButton("Choose…")
        choose.clicked.connect(self._choose_mbtiles)
        clear = QPushButton("Clear")
        clear.clicked.connect(self.mbtiles.clear)
        mbtiles_row = QHBoxLayout()
        mbtiles_row.addWidget(self.mbtiles, 1)
        mbtiles_row.addWidget(choose)
        mbtiles_row.addWidget(clear)
        self.tls_mode = QComboBox()
        self.tls_mode.addItem("Off (HTTP)", "off")
        self.tls_mode.addItem("Self-signed certificate (made for you)", "self-signed")
        self.tls_mode.addItem("My certificate and key files", "files")
        self.tls_mode.setCurrentIndex(max(0, self.tls_mode.findData(settings.tls_mode)))
        self.tls_cert = QLineEdit(settings.tls_cert, placeholderText="PEM certificate (chain)")
        self.tls_key = QLineEdit(settings.tls_key, placeholderText="PEM private key")
        self.problem = QLabel("")
        self.problem.setStyleSheet("color: #b71c1c;")

        form = QFormLayout()
        form.addRow("Bind address", self.host)
        form.addRow("Port", self.port)
        form.addRow("Path", self.path)
        form.addRow("Token", token_row)
        form.addRow("", self.require_token)
        form.addRow("Stale after", self.stale)
        form.addRow("Offline after", self.offline)
        form.addRow("Trail length (positions)", self.trail)
        form.addRow("Map tiles URL", tiles_row)
        form.addRow("Offline map (MBTiles)", mbtiles_row)
        form.addRow("HTTPS", self.tls_mode)
        form.addRow("Certificate file", self.tls_cert)
        form.addRow("Key file", self.tls_key)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        if overridden:
            note = QLabel(f"From the command line, for this run only (not saved unless you change them here): "
                          f"{overridden}.")
            note.setWordWrap(True)
            note.setStyleSheet("color: #455a64;")
            layout.addWidget(note)
        layout.addLayout(form)
        layout.addWidget(self.problem)
        layout.addWidget(buttons)

    def result_settings(self) -> AppSettings:
        """The edited settings."""
        return replace(self.original, host=self.host.currentText().strip(), port=self.port.value(),
                       path=self.path.text().strip() or "/", token=self.token.text().strip(),
                       require_token=self.require_token.isChecked(), stale_after=self.stale.value(),
                       offline_after=self.offline.value(), trail_length=self.trail.value(),
                       tile_url=self.tiles.text().strip(), mbtiles=self.mbtiles.text(),
                       tls_mode=self.tls_mode.currentData(), tls_cert=self.tls_cert.text().strip(),
                       tls_key=self.tls_key.text().strip())

    def _choose_mbtiles(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Offline map", "", "MBTiles (*.mbtiles);;All files (*)")
        if path:
            self.mbtiles.setText(path)

    def _accept(self) -> None:
        s = self.result_settings()
        if not s.path.startswith("/") or s.path == "/status":
            self.problem.setText("The path must start with '/' and cannot be /status.")
        elif s.offline_after <= s.stale_after:
            self.problem.setText("'Offline after' must be longer than 'Stale after'.")
        elif s.require_token and not s.token:
            self.problem.setText("Enter or regenerate a token, or untick 'Require'.")
        elif s.tls_mode == "files" and not (Path(s.tls_cert).is_file() and Path(s.tls_key).is_file()):
            self.problem.setText("Choose an existing certificate file and key file for HTTPS.")
        elif s.host not in ("127.0.0.1", "localhost", "::1") and not s.auth_token:
            self.problem.setText("Listening beyond loopback requires a token.")
        else:
            self.accept()
