"""The Tunnel dialog: reach the listener from the cloud through SSH or cloudflared/ngrok."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from app.server.tunnels import SshTunnelConfig, TunnelState, available_tools


class TunnelDialog(QDialog):
    """Collects tunnel settings; the window starts/stops the tunnel and reports its state here."""

    ssh_requested = Signal(str, str, str, int, bool)  # target, password, key file, remote port, announces URL
    tool_requested = Signal(str)
    stop_requested = Signal()

    def __init__(self, target: str, key: str, remote_port: int, announce: bool, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Tunnel: reach this listener from the internet")
        self.resize(560, 0)
        self.target = QLineEdit(target, placeholderText="user@host[:port], e.g. nokey@localhost.run")
        self.password = QLineEdit(echoMode=QLineEdit.EchoMode.Password, placeholderText="not stored")
        self.key = QLineEdit(key, placeholderText="optional private key file")
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._choose_key)
        key_row = QHBoxLayout()
        key_row.addWidget(self.key, 1)
        key_row.addWidget(browse)
        self.remote_port = QSpinBox(minimum=0, maximum=65535, value=remote_port)
        self.announce = QCheckBox("The server is a tunnel service that prints a public URL (localhost.run, serveo…)")
        self.announce.setChecked(announce)
        start_ssh = QPushButton("Start SSH tunnel")
        start_ssh.clicked.connect(self._start_ssh)
        form = QFormLayout()
        form.addRow("SSH server", self.target)
        form.addRow("Password", self.password)
        form.addRow("Key file", key_row)
        form.addRow("Remote port", self.remote_port)
        form.addRow("", self.announce)
        form.addRow("", start_ssh)
        ssh_box = QGroupBox("SSH reverse tunnel (built in)")
        ssh_box.setLayout(form)

        tools_box = QGroupBox("Tunnel tools on this machine")
        tools_layout = QHBoxLayout(tools_box)
        tools = available_tools()
        for name in ("cloudflared", "ngrok"):
            button = QPushButton(f"Start {name}")
            button.setEnabled(name in tools)
            button.setToolTip(tools.get(name, f"{name} is not on PATH"))
            button.clicked.connect(lambda _=False, n=name: self.tool_requested.emit(n))
            tools_layout.addWidget(button)
        if not tools:
            tools_layout.addWidget(QLabel("(neither cloudflared nor ngrok is on PATH)"))

        self.state = QLabel("No tunnel")
        self.state.setTextFormat(Qt.TextFormat.PlainText)
        self.state.setWordWrap(True)
        self.state.setStyleSheet("font-weight: 600;")
        self.problem = QLabel("")
        self.problem.setStyleSheet("color: #b71c1c;")
        stop = QPushButton("Stop tunnel")
        stop.clicked.connect(self.stop_requested)
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        bottom = QHBoxLayout()
        bottom.addWidget(self.state, 1)
        bottom.addWidget(stop)
        bottom.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(ssh_box)
        layout.addWidget(tools_box)
        layout.addWidget(self.problem)
        layout.addLayout(bottom)

    def _choose_key(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "SSH private key")
        if path:
            self.key.setText(path)

    def _start_ssh(self) -> None:
        try:
            SshTunnelConfig.parse_target(self.target.text())
        except ValueError as exc:
            self.problem.setText(str(exc))
            return
        self.problem.setText("")
        self.ssh_requested.emit(self.target.text().strip(), self.password.text(), self.key.text().strip(),
                                self.remote_port.value(), self.announce.isChecked())

    def show_state(self, state: TunnelState) -> None:
        """Reflect the tunnel's state."""
        text = f"{state.state}: {state.detail}" if state.detail else state.state
        if state.public_url:
            text += f"\nPublic URL: {state.public_url}"
        self.state.setText(text)
