"""Black-box latency as a user's tool sees it: another process polling `GET /status`.

Run as a child process (`start_poller`), it GETs the URL every ``every`` seconds for ``seconds``
(or, with ``seconds`` 0, until `stop_poller` says so: for a run whose length is not known in
advance, such as a backlog being absorbed) and prints one JSON line with every latency and every
failure; `finish_poller` reads it back.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
import urllib.request

import orjson


def poll_status(url: str, seconds: float, every: float) -> None:
    """Child-process mode: GET url every ``every`` s for ``seconds`` (0: until stdin closes or
    says anything); print one JSON summary."""
    latencies: list[float] = []
    failures: list[str] = []
    deadline = time.monotonic() + seconds if seconds > 0 else float("inf")
    stop = threading.Event()
    if seconds <= 0:
        threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    while time.monotonic() < deadline and not stop.is_set():
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                reply.read()
            latencies.append((time.perf_counter() - started) * 1000.0)
        except Exception as exc:  # counted and reported, the run goes on
            failures.append(f"{type(exc).__name__}: {exc}"[:200])
        time.sleep(max(0.0, every - (time.perf_counter() - started)))
    print(orjson.dumps({"latencies": latencies, "failures": failures}).decode(), flush=True)


def start_poller(url: str, seconds: float, every: float) -> subprocess.Popen:
    """Poll ``url`` from a separate Python process (so our own GIL never delays the client);
    ``seconds`` 0 polls until `stop_poller`."""
    return subprocess.Popen([sys.executable, __file__, url, str(seconds), str(every)],
                            stdin=subprocess.PIPE if seconds <= 0 else None, stdout=subprocess.PIPE, text=True)


def stop_poller(poller: subprocess.Popen) -> None:
    """Tell a poller started with ``seconds`` 0 to finish (its summary follows: `finish_poller`)."""
    assert poller.stdin is not None
    poller.stdin.write("stop\n")
    poller.stdin.flush()


def finish_poller(poller: subprocess.Popen) -> dict:
    """Wait for the poller and return ``{"latencies": [ms...], "failures": [text...]}``."""
    out, _ = poller.communicate(timeout=120)
    return orjson.loads(out.strip().splitlines()[-1])


def percentiles(latencies: list[float]) -> dict[str, float]:
    """p50/p90/p99/max in ms (empty when there are fewer than two samples)."""
    if len(latencies) < 2:
        return {}
    # "inclusive": within the samples. The default ("exclusive") extrapolates past the largest one
    # with few samples: a p99 above the max was printed for a 68-poll run.
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"p50": q[49], "p90": q[89], "p99": q[98], "max": max(latencies)}


def summary(latencies: list[float]) -> str:
    """One line: p50, p90, p99, max and the number of polls."""
    p = percentiles(latencies)
    if not p:
        return "no samples"
    return (f"p50 {p['p50']:.1f} ms, p90 {p['p90']:.1f} ms, p99 {p['p99']:.1f} ms, max {p['max']:.1f} ms "
            f"({len(latencies)} polls)")


if __name__ == "__main__":
    poll_status(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]))
