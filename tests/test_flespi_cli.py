"""`trackmon flespi setup|status` and `trackmon pull` as real processes against the
request-checking stand-in of flespi's REST API (tests/flespi_standin.py)."""

from __future__ import annotations

import sqlite3
import time

import pytest

from app.store.queries import iter_messages, list_sessions
from tests.conftest import running_listener
from tests.flespi_standin import TOKEN, running_standin
from tests.processes import trackmon

T0 = 1_700_000_000


@pytest.fixture
def token(monkeypatch) -> None:
    monkeypatch.setenv("FLESPI_TOKEN", TOKEN)


def test_the_flespi_token_comes_only_from_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("FLESPI_TOKEN", raising=False)
    for args in (("flespi", "setup", "--uri", "https://a.b/", "--listener-token", "t"), ("flespi", "status"),
                 ("pull", "--device", "1", "--from", "0", "--to", "1")):
        done = trackmon(*args)
        assert done.returncode == 2 and "set the FLESPI_TOKEN environment variable" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    done = trackmon("flespi", "setup", "--uri", "https://a.b/", "--listener-token", "t", "--token", "x")
    assert done.returncode == 2 and "unrecognized arguments: --token" in done.stderr


def test_setup_creates_updates_and_subscribes(token) -> None:
    with running_standin() as standin:
        standin.state.add_device(11, "van 1", "3520001")
        standin.state.channels[5] = {"id": 5, "name": "teltonika"}
        first = trackmon("flespi", "setup", "--api", standin.url, "--uri", "https://one.example.test/",
                         "--listener-token", "s3cret", "--device", "configuration.ident=3520001", "--channel", "5")
        second = trackmon("flespi", "setup", "--api", standin.url, "--uri", "https://two.example.test/",
                          "--listener-token", "s3cret", "--limit-messages", "200",
                          "--validate-message", "exists('position.latitude')")
        stream = standin.state.streams[1000]
        subs = standin.state.subscriptions[1000]
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == ["stream 1000", "created stream 1000",
                                         "subscribed to devices configuration.ident=3520001",
                                         "subscribed to channels 5"]
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[:2] == [
        "stream 1000", "updated stream 1000: configuration.uri, configuration.limit_messages, validate_message"]
    assert "not subscribed to anything" in second.stdout  # this run asked for no subscription
    assert stream["protocol_id"] == 1 and stream["configuration"]["limit_messages"] == 200
    assert stream["validate_message"] == "exists('position.latitude')"  # top level, not in configuration
    assert stream["configuration"]["headers"] == [{"name": "Authorization", "value": "Bearer s3cret"}]
    assert subs == {"devices": {11}, "channels": {5}}


def test_setup_errors_are_one_line_with_an_exit_code(token, monkeypatch, tmp_path) -> None:
    with running_standin() as standin:
        refused = trackmon("flespi", "setup", "--api", standin.url, "--uri", "ftp://x/", "--listener-token", "t")
        not_pem = tmp_path / "ca.pem"
        not_pem.write_text("hello")
        bad_ca = trackmon("flespi", "setup", "--api", standin.url, "--uri", "https://x/", "--listener-token", "t",
                          "--ca-file", str(not_pem))
        bad_selector = trackmon("flespi", "setup", "--api", standin.url, "--uri", "https://x/",
                                "--listener-token", "t", "--device", "a/b")
        monkeypatch.setenv("FLESPI_TOKEN", "wrong")
        unauthorized = trackmon("flespi", "setup", "--api", standin.url, "--uri", "https://x/", "--listener-token", "t")
    assert refused.returncode == 2 and "--uri must start with http" in refused.stderr
    assert bad_ca.returncode == 2 and "holds no PEM certificate" in bad_ca.stderr
    assert bad_selector.returncode == 2 and "is not a flespi selector" in bad_selector.stderr
    assert unauthorized.returncode == 1 and "did not accept the token (401)" in unauthorized.stderr
    assert not any("Traceback" in p.stderr for p in (refused, bad_ca, bad_selector, unauthorized))
    unreachable = trackmon("flespi", "status", "--api", "http://127.0.0.1:9")
    assert unreachable.returncode == 1 and "cannot reach http://127.0.0.1:9" in unreachable.stderr


def test_status_shows_state_and_delivery_errors(token, tmp_path) -> None:
    with running_standin() as standin, running_listener(tmp_path / "rec.sqlite") as served:
        ok = standin.state.add_stream({"name": "trackmon", "protocol_id": 1, "configuration": {"uri": served.url}})
        broken = standin.state.add_stream({"name": "broken", "protocol_id": 1,
                                           "configuration": {"uri": "http://127.0.0.1:9/"}})
        standin.call(standin.state.enqueue, ok, [{"ident": "a", "timestamp": T0}])
        standin.call(standin.state.enqueue, broken, [{"ident": "b", "timestamp": T0}])
        deadline = time.monotonic() + 10
        while not (standin.state.logs.get(ok) and standin.state.logs.get(broken)):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        good = trackmon("flespi", "status", "--api", standin.url)
        bad = trackmon("flespi", "status", "--api", standin.url, "--stream", str(broken))
        missing = trackmon("flespi", "status", "--api", standin.url, "--name", "nope")
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith(f"flespi stream 'trackmon' ({ok}) · enabled · connected · queue 0 · last delivery")
    assert "no delivery errors" in good.stdout
    assert bad.returncode == 3 and "last error: connection failed" in bad.stdout
    assert "recent delivery errors" in bad.stdout and "queue 1" in bad.stdout
    assert missing.returncode == 1 and "no http stream named 'nope'" in missing.stderr


def test_pull_records_a_new_session_and_then_only_what_is_missing(token, tmp_path) -> None:
    db = tmp_path / "rec.sqlite"
    with running_standin() as standin:
        standin.state.add_device(11, "van 1", "3520001")
        standin.state.store(11, [{"timestamp": T0 + i, "position.latitude": 50.0, "position.longitude": 4 + i / 1e4,
                                  "seq": i} for i in range(2500)])
        first = trackmon("pull", "--api", standin.url, "--device", "configuration.ident=3520001",
                         "--from", "2023-11-14T22:13:20Z", "--to", str(T0 + 1999), "--db", str(db))
        again = trackmon("pull", "--api", standin.url, "--device", "11", "--from", str(T0), "--to", str(T0 + 3000),
                         "--db", str(db), "--append", "--name", "ignored")
        nothing = trackmon("pull", "--api", standin.url, "--device", "77", "--from", "0", "--to", "1", "--db", str(db))
        backwards = trackmon("pull", "--api", standin.url, "--device", "11", "--from", "5", "--to", "1")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("2,000 messages recorded into session")
    assert "van 1 (3520001); 3 pages" in first.stdout  # 1000 per page, paged by time
    assert again.returncode == 0, again.stderr
    assert "500 messages recorded" in again.stdout and "2,000 were already in the recording" in again.stdout
    assert nothing.returncode == 1 and "no device matching '77'" in nothing.stderr
    assert "nothing was recorded" in nothing.stderr
    assert backwards.returncode == 2 and "--to is before --from" in backwards.stderr
    conn = sqlite3.connect(db)
    sessions = list_sessions(conn)
    assert [s.name for s in sessions] == ["flespi pull van 1"]
    seqs = [m.message.params["seq"] for s in sessions for m in iter_messages(conn, s.id)]
    assert sorted(seqs) == list(range(2500))
