"""HTTPS, tunnels and the flespi set-up helper from the window."""

from __future__ import annotations

import ssl

import aiohttp
import asyncssh

from app.server.tls import fingerprint
from tests.processes import free_port
from tests.server.test_tunnels import start_ssh_server
from tests.ui.conftest import TOKEN, post, run, wait_until


def test_https_from_settings_verifies_against_the_certificate(loop, make_window, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TRACKMON_DATA_DIR", str(tmp_path / "data"))
    window = make_window(tls_mode="self-signed")
    url = window.urls()[0]
    assert url.startswith("https://127.0.0.1:") and window.certificate is not None
    assert fingerprint(window.certificate) in window.connection.https.text()
    assert not window.connection.https_box.isHidden()

    async def scenario() -> None:
        context = ssl.create_default_context(cafile=str(window.certificate))
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession() as session, session.post(
                url, json=[{"ident": "tls-ui", "timestamp": 1}], headers=headers, ssl=context) as reply:
            assert reply.status == 200
        await wait_until(lambda: "tls-ui" in window.live_fleet.devices, what="the device")

    run(loop, scenario())


def test_ssh_tunnel_from_the_window_brings_messages_in(loop, make_window, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TRACKMON_DATA_DIR", str(tmp_path / "data"))
    window = make_window()
    ssh_port, remote_port = free_port(), free_port()

    async def scenario() -> None:
        server = await start_ssh_server(ssh_port, asyncssh.generate_private_key("ssh-ed25519"))
        try:
            window.start_ssh_tunnel(f"tracker@127.0.0.1:{ssh_port}", "s3cret", "", remote_port, False)
            await wait_until(lambda: window.tunnel_state.state == "connected", what="tunnel up")
            public = window.public_url()
            assert public == f"http://127.0.0.1:{remote_port}/"
            first_url = window.connection.urls_box.itemAt(0).layout().itemAt(0).widget().text()
            assert first_url == public and public in window.status_urls.text()
            assert await post(public, [{"ident": "through-ssh", "timestamp": 5}]) == 200
            await wait_until(lambda: "through-ssh" in window.live_fleet.devices, what="message via tunnel")
            await window.stop_tunnel()
            assert window.public_url() is None
        finally:
            server.close()

    run(loop, scenario())
    assert window.settings.ssh_target == f"tracker@127.0.0.1:{ssh_port}"  # remembered, the password is not
    assert "s3cret" not in repr(window.settings)


def test_flespi_dialog_local_test_batch_says_it_is_local_only(loop, make_window) -> None:
    window = make_window()

    async def scenario() -> None:
        dialog = window.open_flespi()
        config = dialog.body()["configuration"]
        assert config["uri"] == window.urls()[0]
        assert config["headers"] == [{"name": "Authorization", "value": f"Bearer {TOKEN}"}]
        assert "local only" in dialog.test_button.text()
        dialog.test_button.click()
        await wait_until(lambda: "test batch" in dialog.result.toPlainText(), what="test batch")
        assert "reached" in dialog.result.toPlainText()
        assert "does not show that flespi can reach the URL" in dialog.result.toPlainText()
        await wait_until(lambda: window.live_fleet.total == 4, what="test batch recorded")
        dialog.close()

    run(loop, scenario())


def test_flespi_dialog_warns_about_addresses_flespi_cannot_reach() -> None:
    from app.ui.flespi_dialog import reachability_warning
    assert "cannot reach" in reachability_warning("http://127.0.0.1:8585/")
    assert "cannot reach" in reachability_warning("https://localhost:8585/")
    assert "router forwards" in reachability_warning("http://192.168.1.20:8585/")
    assert reachability_warning("https://k7x2m9q4.serveo.net/") == ""
    assert reachability_warning("http://8.8.8.8:8585/") == ""  # a public address (only classified, never contacted)
