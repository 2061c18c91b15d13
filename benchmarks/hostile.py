"""The listener under hostile clients: loop stalls, slow connections, reject growth.

Starts a headless `trackmon record` process on loopback and measures, each time against a
baseline taken in the same run:

1. **loop stall** — a separate process polls ``GET /status`` every 20 ms and records each
   answer's latency; max and p99 while a ``--big-mib`` batch is posted (and re-sent once as a
   duplicate) vs. the same polling with nothing else going on;
2. **slow connections** — ``--slow`` connections that send half a request line and stop, then
   valid batches posted while they are open: how many get through, and how long each took;
   baseline: the same batches with no slow connection open;
3. **reject bytes** — ``--refused`` unauthenticated requests (fat headers, a query string and a
   body, like a scanner) and the recording's growth per request;
4. **attack bodies** — a 20-million-element array, 60 MB of brackets, a message nested 1,000
   deep: the answer, how long it took and the recorder's peak memory (``--skip attack`` for an
   old tree: the first one took 13 GB there).

    .venv/bin/python benchmarks/hostile.py [--big-mib 64] [--slow 1100] [--refused 400]

Compare with the code before the hardening by running this script with ``--root`` pointing at
an export of the older tree (``--old`` skips what the old listener has no options for).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
from loopback import free_port, stop_process, wait_until_up  # benchmarks/ is this script's own directory

HERE = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"


@contextlib.contextmanager
def recorder(root: Path, db: Path, port: int, *extra: str, nofile: int | None = None):
    """`trackmon record` from ``root`` on 127.0.0.1:port, stopped when the block ends; with
    ``nofile``, started under ``ulimit -n nofile`` (soft and hard)."""
    command = [sys.executable, "-m", "app", "record", "--port", str(port), "--db", str(db), "--token", TOKEN,
               *extra]

    def limit_files() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    process = subprocess.Popen(command, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONPATH": str(root)}, preexec_fn=limit_files)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/status")
        yield process
    finally:
        stop_process(process)
        stderr = process.stderr.read() if process.stderr else b""
        recorder.last_stderr_lines = stderr.count(b"\n")  # type: ignore[attr-defined]


POLLER = r"""
import os, sys, time, http.client
port, seconds, stop = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
end = time.monotonic() + seconds
out = []
while time.monotonic() < end and not os.path.exists(stop):
    t = time.perf_counter()
    try:
        conn.request("GET", "/status", headers={"Authorization": "Bearer bench-token"})
        conn.getresponse().read()
    except Exception:
        conn.close(); conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        continue
    out.append((time.perf_counter() - t) * 1000)
    time.sleep(0.02)
print(" ".join(f"{x:.2f}" for x in out))
"""


def poll(port: int, seconds: float, stop: Path | None = None) -> subprocess.Popen:
    """A process polling /status until ``seconds`` pass or the file ``stop`` exists."""
    return subprocess.Popen([sys.executable, "-c", POLLER, str(port), str(seconds), str(stop or "/nonexistent")],
                            stdout=subprocess.PIPE)


def latencies(process: subprocess.Popen) -> list[float]:
    out, _ = process.communicate(timeout=600)
    return [float(x) for x in out.split()]


def describe(values: list[float]) -> str:
    q = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99
    return f"max {max(values):7.1f} ms  p99 {q[98]:6.1f} ms  p50 {q[49]:5.1f} ms  ({len(values)} polls)"


def post(port: int, body: bytes, headers: dict[str, str] | None = None, timeout: float = 300) -> tuple[int, float]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {TOKEN}", **(headers or {})})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            reply.read()
            status = reply.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError:
        status = 0
    return status, time.perf_counter() - started


def big_batch(mib: int) -> bytes:
    sys.path.insert(0, str(HERE))
    from app.core.simfleet import FleetSimulator
    fleet = FleetSimulator(100, seed=3, start=time.time() - 10_000_000)
    one = orjson.dumps(fleet.next_messages(1000))
    count = max(1, (mib << 20) // len(one) * 1000)
    body = orjson.dumps(fleet.next_messages(count))
    while len(body) > mib << 20:
        count = int(count * 0.97)
        body = orjson.dumps(fleet.next_messages(count))
    return body


def loop_stall(root: Path, tmp: Path, mib: int, seconds: float) -> None:
    body = big_batch(mib)
    print(f"\n1. loop stall: GET /status every 20 ms from another process; batch of {len(body) / 2**20:.1f} MiB, "
          f"{body.count(b'{'):,} '{{'")
    port = free_port()
    with recorder(root, tmp / "stall.sqlite", port, "--max-body", str(mib + 1)):
        quiet = latencies(poll(port, seconds))
        stop = tmp / "stop-polling"
        poller = poll(port, 600, stop)
        time.sleep(1.0)
        status, took = post(port, body)
        status2, took2 = post(port, body)  # re-sent: parsed again, recorded as a retry
        stop.touch()
        busy = latencies(poller)
    print(f"   baseline (idle)      {describe(quiet)}")
    print(f"   while posting        {describe(busy)}   batch: HTTP {status} in {took:.2f} s, "
          f"re-sent: HTTP {status2} in {took2:.2f} s")
    print(f"   ratio max/baseline max: {max(busy) / max(quiet):.1f}")


HALF_LINE = b"POST / HT"


def slow_connections(root: Path, tmp: Path, count: int, batches: int, nofile: int) -> None:
    print(f"\n2. {count} connections holding half a request line, then {batches} valid batches; "
          f"recorder under ulimit -n {nofile}")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this client needs more than the recorder
    sys.path.insert(0, str(HERE))
    from app.core.simfleet import FleetSimulator
    fleet = FleetSimulator(10, seed=5, start=time.time() - 1_000_000)
    bodies = [orjson.dumps(fleet.next_messages(100)) for _ in range(batches * 2)]
    port = free_port()
    with recorder(root, tmp / "slow.sqlite", port, nofile=nofile):
        base = [post(port, b, timeout=30) for b in bodies[:batches]]
        held: list[socket.socket] = []
        started = time.perf_counter()
        for _ in range(count):
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                sock.sendall(HALF_LINE)
                held.append(sock)
            except OSError:
                break
        opened = time.perf_counter() - started
        under = [post(port, b, timeout=15) for b in bodies[batches:]]
        still_open = 0
        for sock in held:
            sock.setblocking(False)
            try:
                still_open += sock.recv(1) != b""
            except BlockingIOError:
                still_open += 1
            except OSError:
                pass
            sock.close()
    lines = recorder.last_stderr_lines  # type: ignore[attr-defined]
    ok_base = sum(s == 200 for s, _ in base)
    ok_under = sum(s == 200 for s, _ in under)
    base_ms = statistics.mean(t for _, t in base) * 1000
    print(f"   baseline: {ok_base}/{batches} batches accepted, mean {base_ms:.1f} ms")
    print(f"   with {len(held)} slow connections opened in {opened:.1f} s ({still_open} still open at the end): "
          f"{ok_under}/{batches} accepted, mean {statistics.mean(t for _, t in under) * 1000:.1f} ms, "
          f"max {max(t for _, t in under) * 1000:.0f} ms")
    print(f"   recorder stderr: {lines} lines")


def reject_bytes(root: Path, tmp: Path, count: int) -> None:
    print(f"\n3. {count} unauthenticated POSTs, each with 100 headers of 8,000 bytes, a query string and a 4 KiB body")
    headers = {f"X-Fat-{i}": "v" * 8000 for i in range(100)}
    body = orjson.dumps([{"ident": "x" * 4000}])
    sizes = {}
    # "same path": a scanner paging one URL (?page=i); "distinct paths": /scan-i, no two alike.
    runs = (("empty", 0, "/?page={i}"), ("same path", count, "/?api_key=k{i}&page={i}"),
            ("distinct paths", count, "/scan-{i}?api_key=k{i}"))
    for name, requests, target in runs:
        db = tmp / f"{name.replace(' ', '-')}.sqlite"
        port = free_port()
        with recorder(root, db, port):
            for i in range(requests):
                request = urllib.request.Request(f"http://127.0.0.1:{port}" + target.format(i=i), data=body,
                                                 method="POST", headers={"Content-Type": "application/json", **headers})
                with contextlib.suppress(urllib.error.HTTPError):
                    urllib.request.urlopen(request, timeout=30).read()
        # Stopped: the WAL is checkpointed into the file, so its size is what the recording keeps.
        sizes[name] = sum(p.stat().st_size for p in tmp.glob(f"{db.name}*"))
        if not requests:
            continue
        import sqlite3
        conn = sqlite3.connect(db)
        rows, stored = conn.execute("SELECT count(*), coalesce(sum(length(headers) + length(body) + length(path)"
                                    " + length(reason)), 0) FROM rejects").fetchone()
        conn.close()
        grown = sizes[name] - sizes["empty"]
        print(f"   {name:<15} recording +{grown:,} bytes = {grown / count:,.0f} bytes per refused request; "
              f"{rows} reject rows holding {stored:,} bytes ({stored / count:,.0f} per request)")


def vm_hwm_mib(pid: int) -> float:
    """Peak resident memory of a process (Linux), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def attack_bodies(root: Path, tmp: Path) -> None:
    """Bodies that used to take gigabytes or a 500 (not run against the old tree: it took 13 GB)."""
    print("\n4. attack bodies (each refused; time to the answer and the recorder's peak memory)")
    cases = {
        "20M-element array of 0 (40 MB)": b"[" + b"0," * 20_000_000 + b"0]",
        "60 MB of nested [": b"[" * 30_000_000 + b"]" * 30_000_000,
        "one message nested 1,000 deep": b'[{"a":' * 1 + b'{"x":' * 1000 + b"1" + b"}" * 1001 + b"]",
    }
    port = free_port()
    with recorder(root, tmp / "attack.sqlite", port) as process:
        start = vm_hwm_mib(process.pid)
        for name, body in cases.items():
            status, took = post(port, body)
            print(f"   {name:<34} HTTP {status} in {took:5.2f} s, recorder peak RSS {vm_hwm_mib(process.pid):6.0f} MiB "
                  f"(at start {start:.0f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=HERE, help="tree whose `app` is run (default: this one)")
    parser.add_argument("--big-mib", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0, help="baseline polling time")
    parser.add_argument("--slow", type=int, default=1100)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--nofile", type=int, default=1024, help="open-file limit of the recorder in part 2")
    parser.add_argument("--refused", type=int, default=400)
    parser.add_argument("--skip", action="append", default=[], choices=("stall", "slow", "rejects", "attack"))
    args = parser.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; app from {args.root}")
    with tempfile.TemporaryDirectory() as tmp:
        if "stall" not in args.skip:
            loop_stall(args.root, Path(tmp), args.big_mib, args.seconds)
        if "slow" not in args.skip:
            slow_connections(args.root, Path(tmp), args.slow, args.batches, args.nofile)
        if "rejects" not in args.skip:
            reject_bytes(args.root, Path(tmp), args.refused)
        if "attack" not in args.skip:
            attack_bodies(args.root, Path(tmp))


if __name__ == "__main__":
    main()
