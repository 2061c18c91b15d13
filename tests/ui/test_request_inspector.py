"""The Requests panel's inspector: the request, our response, and a replay against the listener."""

from __future__ import annotations

import orjson

from tests.ui.conftest import TOKEN, post, run, wait_until

FIX = {"ident": "req-1", "timestamp": 1_700_000_000, "position.latitude": 49.0, "position.longitude": 28.6}


def test_an_accepted_request_shows_our_response_and_replays_without_doubling(loop, make_window) -> None:
    window = make_window()

    async def scenario() -> None:
        assert await post(window.urls()[0], [FIX, FIX | {"timestamp": 1_700_000_010}],
                          headers={"X-Stream": "flespi-42"}) == 200
        await wait_until(lambda: window.requests_model.rowCount() == 1, what="the request")
        dialog = window._request_details(window.requests_model.index(0, 0))
        assert dialog.response_status.text() == "HTTP 200"
        assert orjson.loads(dialog.response_body.toPlainText())["accepted"] == 2
        assert "Content-Type: application/json" in dialog.response_headers.toPlainText()
        assert "X-Stream: flespi-42" in dialog.request_headers.toPlainText()
        assert TOKEN not in dialog.request_headers.toPlainText()  # the secret is redacted
        assert [m["ident"] for m in orjson.loads(dialog.request_body.toPlainText())] == ["req-1", "req-1"]
        dialog.replay_button.click()
        await wait_until(lambda: dialog.answer is not None, what="the replay's answer")
        assert dialog.answer.status == 200 and orjson.loads(dialog.answer.body)["duplicate"] is True
        assert "HTTP 200" in dialog.replay_result.text()
        await wait_until(lambda: window.requests_model.rowCount() == 2, what="the replay listed")
        dialog.close()

    run(loop, scenario())
    assert window.live_fleet.total == 2  # recorded once
    assert window.requests_model.items[1].duplicate


def test_a_refused_request_shows_the_refusal_and_replays_the_same_way(loop, make_window) -> None:
    window = make_window()

    async def scenario() -> None:
        assert await post(window.urls()[0], raw=b'[{"ident": "x"') == 400
        await wait_until(lambda: window.requests_model.rowCount() == 1, what="the refusal")
        dialog = window._request_details(window.requests_model.index(0, 0))
        assert dialog.response_status.text() == "HTTP 400"
        assert "error" in orjson.loads(dialog.response_body.toPlainText())
        assert dialog.request_body.toPlainText() == '[{"ident": "x"'
        dialog.replay_button.click()
        await wait_until(lambda: dialog.answer is not None, what="the replay's answer")
        assert dialog.answer.status == 400  # the same request, the same answer
        dialog.close()

    run(loop, scenario())


def test_a_request_refused_before_authentication_keeps_no_body_to_replay(loop, make_window) -> None:
    window = make_window()

    async def scenario() -> None:
        assert await post(window.urls()[0], [FIX], token="wrong") == 401
        await wait_until(lambda: window.requests_model.rowCount() == 1, what="the refusal")

    run(loop, scenario())
    dialog = window._request_details(window.requests_model.index(0, 0))
    assert dialog.response_status.text() == "HTTP 401" and not dialog.replay_button.isEnabled()
    assert "not kept" in dialog.replay_result.text()
    dialog.close()
