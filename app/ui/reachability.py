"""How the window is reached from the cloud: its TLS set-up, tunnels, the flespi stream helper.

A mixin of `MainWindow` (it uses the window's settings, listener and status bar).
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
import time
from pathlib import Path

import orjson
from PySide6.QtWidgets import (
    QFileDialog,
)

from app.paths import data_dir
from app.server.addresses import interface_addresses
from app.server.probe_batch import TEST_IDENT_PREFIX, TEST_NAME, make_test_batch
from app.server.service import server_ssl_context
from app.server.stream_client import GiveUp, StreamSender
from app.server.tls import export_certificate, make_self_signed
from app.server.tunnels import ExternalTunnel, SshTunnel, SshTunnelConfig, TunnelState
from app.ui.flespi_dialog import FlespiDialog
from app.ui.flespi_pull_dialog import FlespiPullDialog
from app.ui.tunnel_dialog import TunnelDialog


class ReachabilityMixin:
    """Tunnels, HTTPS and flespi set-up for the main window."""

    def _server_tls(self) -> tuple[ssl.SSLContext | None, Path | None]:
        """The listener's TLS context and certificate file from the CLI or Settings (None: HTTP)."""
        if self.cli_ssl_context is not None:
            return self.cli_ssl_context, None
        mode = self.settings.tls_mode
        if mode == "self-signed":
            cert, key = make_self_signed(data_dir(), hosts=interface_addresses())
        elif mode == "files":
            cert, key = Path(self.settings.tls_cert), Path(self.settings.tls_key)
        else:
            return None, None
        return server_ssl_context(cert, key), cert

    def public_url(self) -> str | None:
        """The tunnel's public address for the stream's URI (with the listener's path)."""
        url = self.tunnel_state.public_url if self.tunnel_state.state == "connected" else None
        return None if url is None else url.rstrip("/") + self.settings.path

    def open_tunnel(self) -> TunnelDialog:
        """Show the Tunnel dialog (non-modal); returns it."""
        s = self.settings
        dialog = TunnelDialog(s.ssh_target, s.ssh_key, s.ssh_remote_port, s.ssh_announce, self)
        dialog.ssh_requested.connect(self.start_ssh_tunnel)
        dialog.tool_requested.connect(lambda tool: self._background(self.start_tool_tunnel(tool)))
        dialog.stop_requested.connect(lambda: self._background(self.stop_tunnel()))
        dialog.show_state(self.tunnel_state)
        self.tunnel_dialog = dialog
        dialog.show()
        return dialog

    def _tunnel_changed(self, state: TunnelState) -> None:
        self.tunnel_state = state
        if self.tunnel_dialog is not None:
            self.tunnel_dialog.show_state(state)
        self._show_listener()

    def start_ssh_tunnel(self, target: str, password: str, key: str, remote_port: int, announce: bool) -> None:
        """Open an SSH reverse tunnel to the listener (remembered in Settings, password excepted)."""
        user, host, port = SshTunnelConfig.parse_target(target)
        self.apply_settings(self.with_settings(ssh_target=target, ssh_key=key, ssh_remote_port=remote_port,
                                               ssh_announce=announce))
        local_port = self.service.port if self.service is not None and self.service.port else self.settings.port
        config = SshTunnelConfig(host=host, port=port, username=user, password=password or None,
                                 key_path=key or None, remote_port=remote_port, announce=announce,
                                 local_port=local_port, known_hosts=data_dir() / "known_hosts")

        async def run() -> None:
            await self.stop_tunnel()
            tunnel = self.tunnel = SshTunnel(config, self._tunnel_changed)
            await tunnel.run()

        self._background(run())

    async def start_tool_tunnel(self, tool: str) -> None:
        """Start cloudflared or ngrok for the listener's port."""
        await self.stop_tunnel()
        port = self.service.port if self.service is not None and self.service.port else self.settings.port
        tunnel = self.tunnel = ExternalTunnel(tool, port, self._tunnel_changed)
        try:
            await tunnel.start()
        except OSError as exc:
            self._tunnel_changed(TunnelState("failed", str(exc)))

    async def stop_tunnel(self) -> None:
        """Close the tunnel if one runs (also on exit, so no tool is left behind)."""
        tunnel, self.tunnel = self.tunnel, None
        if isinstance(tunnel, SshTunnel):
            tunnel.stop()
        elif isinstance(tunnel, ExternalTunnel):
            await tunnel.stop()
        if tunnel is not None:
            self._tunnel_changed(TunnelState("stopped"))

    def open_flespi(self) -> FlespiDialog:
        """Show the flespi stream set-up dialog for the public URL (or the listener's URLs)."""
        public = self.public_url()
        header = self.auth_header()
        headers = dict([header.split(": ", 1)]) if header else {}
        ca_pem = self.certificate.read_text() if self.certificate else None
        dialog = FlespiDialog(([public] if public else []) + self.urls(), headers, ca_pem, self.settings.flespi_api,
                              local_test=self._send_test_batch, arrival=self._flespi_arrival, run=self._background,
                              on_stream=self.flespi_status.watch, parent=self)
        dialog.show()
        return dialog

    def open_flespi_pull(self) -> FlespiPullDialog:
        """Show 'Import from flespi…' (pulled pages into the live session also reach the views)."""
        poller = self.flespi_status.poller  # the token and API of the watched stream, if any
        dialog = FlespiPullDialog(self.recorder, poller.api if poller is not None else self.settings.flespi_api,
                                  run=self._background,
                                  token=poller.token if poller is not None else "", parent=self)
        dialog.show()
        return dialog

    async def _flespi_arrival(self, marker: str, seconds: float) -> bool:
        """Whether a test message carrying ``marker`` (as its ident or its ``trackmon.test``)
        reaches the live view within ``seconds``."""
        def arrived() -> bool:
            if marker in self.live_fleet.devices:
                return True
            recent = itertools.islice(reversed(self.live_fleet.log), 500)
            return any(entry.message.params.get("trackmon.test") == marker for entry in recent)

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if arrived():
                return True
            await asyncio.sleep(0.2)
        return arrived()

    async def _send_test_batch(self, url: str) -> str:
        header = self.auth_header()
        headers = dict([header.split(": ", 1)]) if header else {}
        batch = make_test_batch(time.time())  # marked test devices, never the demo's (see probe_batch)
        ssl_context: ssl.SSLContext | bool | None = None
        if url.startswith("https") and self.certificate:
            ssl_context = ssl.create_default_context(cafile=str(self.certificate))
        try:
            async with StreamSender(url, headers, ssl_context=ssl_context, max_attempts=1, timeout=20) as sender:
                await sender.send(orjson.dumps(batch), len(batch))
        except GiveUp as exc:
            return f"The test batch did not arrive: {exc}"
        return (f"The test batch of {len(batch)} messages from test devices {TEST_IDENT_PREFIX}1 and "
                f"{TEST_IDENT_PREFIX}2 (named '{TEST_NAME}') reached {url} and was recorded (HTTP 200). It was sent "
                "from this machine: it does not show that flespi can reach the URL (use 'Test through flespi').")

    def _export_certificate(self) -> None:
        if self.certificate is None:
            return
        target, _ = QFileDialog.getSaveFileName(self, "Export certificate", str(Path.home() / "trackmon-ca.pem"),
                                                "PEM certificate (*.pem)")
        if target:
            export_certificate(self.certificate, Path(target))
            self.statusBar().showMessage(f"Certificate saved to {target}", 8000)

