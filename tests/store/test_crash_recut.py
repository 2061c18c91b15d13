"""kill -9 right after a batch was committed whose reply never reached the stream; the stream
re-sends it after the restart merged with newer messages (re-cut, grown). Every message is in
the file once: the restarted recorder knows the keys from the file."""

from __future__ import annotations

import threading
import time
import urllib.error

import orjson

from tests.conftest import http
from tests.processes import free_port, recorder_process
from tests.store.faulty import assert_each_once, batch, names

BATCHES = 40


class RecuttingStream(threading.Thread):
    """Sends batch after batch; whatever was not acknowledged goes out again together with the
    next batch (so a retry is never byte-identical). Told to, it treats one 200 as lost."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.acked: set[tuple[str, float]] = set()
        self.lose_next_reply = threading.Event()
        self.reply_lost = threading.Event()
        self.resume = threading.Event()
        self.lost: list[dict] = []
        self.retries = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _run(self) -> None:
        pending: list[dict] = []
        number = 0
        deadline = time.monotonic() + 120
        while (number < BATCHES or pending) and time.monotonic() < deadline:
            if number < BATCHES:
                pending = pending + batch(number)
                number += 1
            try:
                reply = http("POST", self.url, orjson.dumps(pending), {"Content-Type": "application/json"})
                ok = reply.status == 200
            except (urllib.error.URLError, ConnectionError, OSError):
                ok = False
            if not ok:
                self.retries += 1
                time.sleep(0.05)
                continue
            if self.lose_next_reply.is_set():
                self.lose_next_reply.clear()
                self.lost = list(pending)  # committed, but as far as the stream knows, not
                self.reply_lost.set()
                self.resume.wait(60)
                continue
            self.acked |= names(pending)
            pending = []


def test_kill_9_then_a_recut_retry_of_a_committed_batch_is_recorded_once(tmp_path) -> None:
    db = tmp_path / "recut.sqlite"
    port = free_port()
    with recorder_process(db, port=port) as first:
        stream = RecuttingStream(first.url)
        stream.start()
        try:
            while http("GET", first.url + "status").body["batches"] < 10:
                assert stream.is_alive(), stream.error
                time.sleep(0.01)
            stream.lose_next_reply.set()
            assert stream.reply_lost.wait(30)
            first.kill_hard()  # the lost batch is committed; its chunks were probably not written yet
            with recorder_process(db, port=port) as second:
                stream.resume.set()
                stream.join(120)
                assert not stream.is_alive() and stream.error is None
                status = http("GET", second.url + "status").body
        finally:
            stream.resume.set()
            stream.join(10)
    lost = names(stream.lost)
    assert lost and lost <= stream.acked, "the lost batch went out again and was acknowledged"
    assert status["duplicates"] >= len(lost), "the restarted recorder recognised it, message by message"
    assert stream.acked == names([m for n in range(BATCHES) for m in batch(n)])
    assert_each_once(db, stream.acked)
