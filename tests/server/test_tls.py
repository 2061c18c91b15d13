"""HTTPS with the self-signed certificate: real TLS clients over loopback."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request

import orjson
import pytest

from app.server.tls import certificate_names, fingerprint, make_self_signed
from tests.processes import recorder_process, trackmon


def post(url: str, context: ssl.SSLContext) -> int:
    request = urllib.request.Request(url, data=orjson.dumps([{"ident": "tls", "timestamp": 1.0}]),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, context=context, timeout=20) as reply:
        return reply.status


def test_self_signed_certificate_is_its_own_ca_and_stable(tmp_path) -> None:
    cert, key = make_self_signed(tmp_path, hosts=["192.0.2.7", "tracker.example"])
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert {"localhost", "127.0.0.1", "192.0.2.7", "tracker.example"} <= set(certificate_names(cert))
    first = fingerprint(cert)
    assert len(first.split(":")) == 32
    assert make_self_signed(tmp_path)[0] == cert and fingerprint(cert) == first  # reused, not remade
    make_self_signed(tmp_path, regenerate=True)
    assert fingerprint(cert) != first


def test_https_listener_verified_against_the_exported_certificate(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TRACKMON_DATA_DIR", str(tmp_path / "data"))  # inherited by the processes below
    exported = tmp_path / "for-flespi.pem"
    shown = trackmon("cert", "--export", str(exported))
    assert shown.returncode == 0 and "SHA-256" in shown.stdout
    with recorder_process(tmp_path / "tls.sqlite", "--tls-self-signed") as rec:
        assert rec.url.startswith("https://127.0.0.1:")
        trusted = ssl.create_default_context(cafile=str(exported))
        assert post(rec.url, trusted) == 200
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            post(rec.url, ssl.create_default_context())  # system CAs do not know it
        sent = trackmon("simulate", "--to", rec.url, "--cafile", str(exported), "--rate", "0", "--count", "20")
        assert sent.returncode == 0, sent.stderr
    assert fingerprint(exported) in shown.stdout
