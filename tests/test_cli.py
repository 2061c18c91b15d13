"""What a user sees when a command cannot do what was asked: one line and an exit code."""

from __future__ import annotations

import socket

from tests.processes import trackmon


def assert_one_line_error(result, code: int, *needles: str) -> None:
    assert result.returncode == code
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "an error message was printed"
    for needle in needles:
        assert needle in lines[-1]


def test_occupied_port_is_a_one_line_error(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = trackmon("record", "--db", str(tmp_path / "x.sqlite"), "--port", str(port))
    assert_one_line_error(result, 1, f"port {port}", "already in use", "--port")


def test_second_recorder_on_the_same_file_is_refused(tmp_path) -> None:
    from tests.processes import recorder_process
    db = tmp_path / "shared.sqlite"
    with recorder_process(db):
        result = trackmon("record", "--db", str(db), "--port", "0")
    assert_one_line_error(result, 1, "being recorded by another trackmon", "--db")


def test_bad_arguments_give_usage_errors() -> None:
    assert_one_line_error(trackmon("record", "--port", "99999"), 2, "port must be 0-65535")
    assert_one_line_error(trackmon("simulate", "--to", "ftp://x"), 2, "http:// or https://")
    assert_one_line_error(trackmon("simulate", "--to", "http://127.0.0.1:1/", "--rate", "0"), 2,
                          "--count or --duration")
    assert_one_line_error(trackmon("simulate", "--to", "http://h/", "--header", "nocolon"), 2, "Name: value")
    assert_one_line_error(trackmon("nonsense"), 2, "invalid choice")


def test_listening_beyond_loopback_without_a_token_is_refused(tmp_path) -> None:
    result = trackmon("record", "--db", str(tmp_path / "x.sqlite"), "--host", "0.0.0.0")
    assert_one_line_error(result, 2, "without a token", "--token")


def test_reserved_path_and_half_tls_options_are_refused(tmp_path) -> None:
    db = str(tmp_path / "x.sqlite")
    assert_one_line_error(trackmon("record", "--db", db, "--path", "/status"), 2, "reserved")
    assert_one_line_error(trackmon("record", "--db", db, "--tls-cert", "a.pem"), 2, "both")


def test_sessions_of_a_missing_or_foreign_file(tmp_path) -> None:
    assert_one_line_error(trackmon("sessions", "--db", str(tmp_path / "none.sqlite")), 1, "no recording")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    assert_one_line_error(trackmon("sessions", "--db", str(junk)), 1, "cannot read")


def test_simulate_gives_up_only_when_asked(tmp_path) -> None:
    result = trackmon("simulate", "--to", "http://127.0.0.1:9/", "--count", "5", "--rate", "0",
                      "--max-attempts", "2")
    assert_one_line_error(result, 1, "gave up after 2 attempts")


def _recording_with_a_jump(tmp_path):
    import orjson

    from app.core.normalize import normalize_batch
    from app.store.recorder import Recorder
    db = tmp_path / "health.sqlite"
    rec = Recorder(db)
    rec.start_session()
    batch = [{"ident": "t1", "device.name": "Tester", "timestamp": 1_767_225_600 + i * 10,
              "position.latitude": 50 + (0.5 if i == 6 else i * 1e-4), "position.longitude": 10.0}
             for i in range(20)] + [{"ident": "t2", "timestamp": 1_767_225_600 + i * 10,
                                     "position.latitude": 51.0, "position.longitude": 11 + i * 1e-4}
                                    for i in range(20)]
    body = orjson.dumps(batch)
    rec.write_batch(1_767_226_000.0, "p", len(body), body, normalize_batch(batch, 1_767_226_000.0, body), 0.0)
    rec.close()
    return db


def test_check_reports_per_device_and_gates_on_chosen_checks(tmp_path) -> None:
    import orjson
    db = _recording_with_a_jump(tmp_path)
    plain = trackmon("check", "--db", str(db))
    assert plain.returncode == 0
    assert "Tester (t1): 20 messages, usual interval 10 s, health: error" in plain.stdout
    assert "Position jumps: 2" in plain.stdout
    report = orjson.loads(trackmon("check", "--db", str(db), "--json").stdout)
    assert report["devices"]["t1"]["findings"]["jump"]["count"] == 2
    assert report["devices"]["t2"]["findings"] == {} and report["failed"] == []
    gated = trackmon("check", "--db", str(db), "--fail-on", "jump")
    assert gated.returncode == 3 and "FAILED: jump" in gated.stderr
    only_t2 = trackmon("check", "--db", str(db), "--device", "t2", "--fail-on", "errors")
    assert only_t2.returncode == 0 and "t1" not in only_t2.stdout
    relaxed = trackmon("check", "--db", str(db), "--jump-kmh", "100000", "--fail-on", "jump")
    assert relaxed.returncode == 0
    assert_one_line_error(trackmon("check", "--db", str(db), "--fail-on", "nonsense"), 2, "unknown check")
    assert_one_line_error(trackmon("check", "--db", str(db), "--device", "zz"), 1, "no messages from zz")


def test_the_token_can_come_from_a_file_or_the_environment(tmp_path, monkeypatch) -> None:
    from tests.conftest import http
    from tests.processes import recorder_process

    token_file = tmp_path / "token"
    token_file.write_text("from-a-file\n")
    monkeypatch.setenv("TRACKMON_TOKEN", "from-the-environment")
    with recorder_process(tmp_path / "f.sqlite", "--token-file", str(token_file)) as rec:
        status = rec.url.rstrip("/") + "/status"
        assert set(http("GET", status).body) == {"service", "status", "auth", "uptime_s"}
        assert "database" in http("GET", status, headers={"Authorization": "Bearer from-a-file"}).body
    with recorder_process(tmp_path / "e.sqlite") as rec:  # no token option: TRACKMON_TOKEN
        status = rec.url.rstrip("/") + "/status"
        assert "database" in http("GET", status, headers={"Authorization": "Bearer from-the-environment"}).body
        assert "database" not in http("GET", status).body


def test_token_options_that_cannot_work_are_usage_errors(tmp_path) -> None:
    db = str(tmp_path / "x.sqlite")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert_one_line_error(trackmon("record", "--db", db, "--token", "a", "--token-file", str(empty)), 2,
                          "either --token or --token-file")
    assert_one_line_error(trackmon("record", "--db", db, "--token-file", str(empty)), 2, "is empty")
    assert_one_line_error(trackmon("record", "--db", db, "--token-file", str(tmp_path / "none")), 2,
                          "cannot read")
    help_text = trackmon("record", "--help").stdout
    assert "--token-file" in help_text and "TRACKMON_TOKEN" in help_text and "process list" in help_text


def test_an_ssh_tunnel_without_a_token_is_refused(tmp_path) -> None:
    result = trackmon("record", "--db", str(tmp_path / "x.sqlite"), "--ssh-tunnel", "me@127.0.0.1:1")
    assert_one_line_error(result, 2, "SSH tunnel without a token", "--token-file")


def test_sessions_lists_messages_once_and_counts_what_was_re_sent(tmp_path) -> None:
    from tests.conftest import running_listener
    db = tmp_path / "rec.sqlite"
    first = [{"ident": "a", "timestamp": 1_700_000_000 + i, "server.timestamp": 1_700_000_001 + i} for i in range(3)]
    recut = [*first[1:], {"ident": "a", "timestamp": 1_700_000_010, "server.timestamp": 1_700_000_011}]
    with running_listener(db) as served:
        assert served.post(first).status == 200
        assert served.post(recut).body["duplicates"] == 2  # a retry cut differently: 2 already recorded
    result = trackmon("sessions", "--db", str(db))
    header, row = result.stdout.splitlines()[:2]

    def cell(name: str) -> str:  # numbers are right-aligned under their heading
        end = header.index(name) + len(name)
        return row[end - 9:end].split()[-1]

    assert (cell("messages"), cell("re-sent")) == ("4", "2")
