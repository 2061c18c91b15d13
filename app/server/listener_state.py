"""One account of the listener's state, which every part of the window renders from.

The status bar, the connection panel and the empty state used to each work out for themselves
whether the listener was up, whether anything was being recorded and how many requests were
refused — and contradicted one another ("Not listening" beside "Recording …", "0 rejected" beside
five refusals). `ListenerState` is told what happens (started, failed, paused, a request answered)
and `ListenerState.view` turns it into the words all of them show. Pure: no Qt, no I/O.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from app.core.display import age_text, utc_text

#: Nothing received for this long while listening, after data had arrived: say so.
QUIET_AFTER = 120.0
#: Refusals within this window make the link "unhealthy".
RECENT_REFUSALS = 60.0

OK, IDLE, WARN, ERROR = "ok", "idle", "warn", "error"


@dataclass(frozen=True, slots=True)
class StatusView:
    """Everything the window says about its listener at one instant (all plain text)."""

    heading: str  # "Waiting for data", "Receiving data", "Not listening", ...
    level: str  # OK, IDLE, WARN or ERROR: how the heading is coloured
    detail: str  # where from, how recently, what is wrong and what to do
    listening: str  # "Listening on …" or "Not listening: why"
    listening_level: str
    urls: tuple[str, ...]  # URLs that can be copied: empty when nothing listens there
    totals: str  # "1,234 messages · 26 devices · 5 refused · 0 re-sent"
    recording: str  # "Recording x.sqlite (1.2 MB)", "Recording paused", "NOT recording: why"
    recording_level: str
    suggest_flespi: bool  # nothing arrives: point at the flespi set-up


class ListenerState:
    """What happened to the listener and its requests, kept as plain data."""

    def __init__(self, quiet_after: float = QUIET_AFTER) -> None:
        self.quiet_after = quiet_after
        self.listening = False
        self.urls: tuple[str, ...] = ()
        self.public_url: str | None = None
        self.problem = ""  # why it is not listening, in words
        self.paused = False  # the user unticked Recording
        self.since: float | None = None  # when listening started
        self.accepted = 0  # requests answered 200
        self.rejected = 0  # requests refused (4xx/5xx)
        self.resent = 0  # requests that repeated a recorded batch
        self.last_data_at: float | None = None
        self.last_peer = ""
        self.last_refusal = ""  # "401 missing header Authorization from 1.2.3.4"
        self._refusals: deque[float] = deque(maxlen=1000)
        self.demo_running = False
        self.demo_fed_last = False  # the newest data came while the demo feed ran

    # -- what happened ------------------------------------------------------------------------
    def started(self, urls: list[str], now: float) -> None:
        """The listener is serving at ``urls``."""
        self.listening, self.urls, self.problem, self.paused = True, tuple(urls), "", False
        self.since = now

    def failed(self, problem: str) -> None:
        """The listener could not start; ``problem`` says why and what to do (see error_words)."""
        self.listening, self.urls, self.problem, self.paused = False, (), problem, False

    def paused_by_user(self) -> None:
        """Recording was switched off: nothing listens and nothing is recorded, on purpose."""
        self.listening, self.urls, self.problem, self.paused = False, (), "", True

    def request(self, received_at: float, peer: str, status: int, count: int, *, duplicate: bool = False,
                reason: str = "") -> None:
        """One request was answered (the same events the Requests panel lists)."""
        if status == 200:
            self.accepted += 1
            if duplicate:
                self.resent += 1
            self.last_data_at = received_at
            self.last_peer = peer
            self.demo_fed_last = self.demo_running
        else:
            self.rejected += 1
            self._refusals.append(received_at)
            self.last_refusal = f"{status} {reason} from {peer or 'unknown peer'}".strip()

    def refusals_since(self, since: float) -> int:
        """How many requests were refused at or after ``since``."""
        return sum(1 for t in self._refusals if t >= since)

    # -- what to say ----------------------------------------------------------------------------
    def view(self, now: float, *, messages: int, devices: int, recording_problem: str | None,
             file_name: str, file_bytes: int) -> StatusView:
        """The words for the status bar, the connection panel and the empty state, at ``now``."""
        heading, level, detail, flespi = self._health(now, devices)
        if recording_problem and self.listening:  # requests are answered 503: nothing is kept
            heading, level = "Not recording", ERROR
            detail = (f"Batches are refused with 503 and re-sent by the stream until this is fixed: "
                      f"{recording_problem}.")
        if self.listening:
            urls = ((self.public_url,) if self.public_url else ()) + self.urls
            listening = ("Public " + self.public_url + "  ·  " if self.public_url else "") + \
                "Listening on " + "  ·  ".join(self.urls)
            listening_level = OK
        elif self.paused:
            urls, listening, listening_level = (), "Not listening or recording (tick Recording to resume)", IDLE
        else:
            urls, listening, listening_level = (), f"Not listening: {self.problem}", ERROR
        refused = f"{self.rejected:,} refused" if self.rejected != 1 else "1 refused"
        totals = f"{messages:,} messages · {devices:,} devices · {refused} · {self.resent:,} re-sent"
        if recording_problem:
            recording, recording_level = f"NOT recording: {recording_problem.split(';')[0]} (503s)", ERROR
        elif self.listening:
            recording, recording_level = f"Recording {file_name} ({file_bytes / 1e6:.1f} MB)", OK
        else:
            recording, recording_level = f"Not recording · {file_name} ({file_bytes / 1e6:.1f} MB)", IDLE
        return StatusView(heading, level, detail, listening, listening_level, urls, totals, recording,
                          recording_level, flespi)

    def _health(self, now: float, devices: int) -> tuple[str, str, str, bool]:
        """(heading, level, detail, suggest flespi): is data arriving, from where, is it healthy."""
        if self.paused:
            return ("Paused", IDLE, "Recording is off: nothing is listening or recorded. Tick Recording to resume.",
                    False)
        if not self.listening:
            return "Not listening", ERROR, self.problem[:1].upper() + self.problem[1:] + ".", False
        recent_refusals = self.refusals_since(now - RECENT_REFUSALS)
        refused = (f"{recent_refusals} request{'s' if recent_refusals != 1 else ''} refused in the last minute "
                   f"(latest: {self.last_refusal}) — see the Requests tab")
        if self.last_data_at is None:
            if recent_refusals:
                return ("Requests arrive but are refused", ERROR,
                        refused + ". Check the stream's URL path and Authorization header.", True)
            return ("Waiting for data" if devices == 0 else "Listening", IDLE,
                    "Nothing has arrived yet. Point a flespi HTTP stream here (flespi set-up), or start the "
                    "demo feed.", devices == 0)
        age = max(0.0, now - self.last_data_at)
        source = "the demo feed" if self.demo_fed_last else (self.last_peer or "an unknown peer")
        when = f"last data {age_text(age)} ago ({utc_text(self.last_data_at)} UTC) from {source}"
        if self.demo_fed_last and not self.demo_running:
            return "Demo feed stopped", IDLE, when[:1].upper() + when[1:] + ".", False
        if age >= self.quiet_after:
            return (f"No data for {age_text(age)}", WARN,
                    f"The {when}. Is the flespi stream still sending? Check it in flespi set-up, and its log "
                    "in flespi.", True)
        detail = f"From {source} · last batch {age_text(age)} ago · {self.accepted:,} requests accepted"
        if recent_refusals:
            return "Receiving data, some requests refused", WARN, detail + ". " + refused + ".", False
        return "Receiving data", OK, detail + ".", False
