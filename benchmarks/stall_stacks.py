"""What every thread of the window was doing during the soak's stalls, native frames included.

Python's own stack (the soak's watchdog) says nothing when the GUI thread is inside Qt with no
frame of ours — 12 of the 22 places of one soak. `perf` sees native frames. Run the soak under it
with the kernel clock the soak's stall log uses, then give this script both:

    perf record -k CLOCK_MONOTONIC -F 99 --call-graph dwarf,8192 -o soak.perf -- \\
        .venv/bin/python benchmarks/soak.py --stall-log stalls.jsonl ...
    perf script -F comm,pid,tid,time,ip,sym,dso -i soak.perf > soak.txt
    .venv/bin/python benchmarks/stall_stacks.py stalls.jsonl soak.txt

For each stall: its length, where the watchdog saw the GUI thread, and per thread of the process
the samples that fell inside it with their most common innermost frames (libpython's evaluation
loop skipped, so a thread running Python shows what it called into).
"""

from __future__ import annotations

import argparse
import bisect
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

HEADER = re.compile(r"^(?P<comm>.+?)\s+(?P<pid>\d+)/(?P<tid>\d+)\s+(?P<time>\d+\.\d+):\s*$")
FRAME = re.compile(r"^\s*[0-9a-f]+\s+(?P<sym>.+?)\s+\((?P<dso>.*)\)\s*$")
#: The interpreter's own machinery: a frame below it is what Python code is doing.
INTERPRETER = ("_PyEval_", "PyObject_Vectorcall", "_PyObject_", "cfunction_", "method_vectorcall", "_PyFunction_",
               "PyEval_", "slot_tp_call", "object_vacall", "_Py_", "vectorcall")


@dataclass
class Sample:
    comm: str
    pid: int
    tid: int
    time: float
    frames: list[str] = field(default_factory=list)


def read_samples(path: Path, pids: set[int]) -> list[Sample]:
    """`perf script -F comm,pid,tid,time,ip,sym,dso` output → the samples of processes ``pids``,
    innermost frame first (the rest are skipped as they are read: a soak's output is gigabytes)."""
    samples: list[Sample] = []
    current: Sample | None = None
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            header = HEADER.match(line)
            if header:
                current = None
                if int(header["pid"]) in pids:
                    current = Sample(header["comm"].strip(), int(header["pid"]), int(header["tid"]),
                                     float(header["time"]))
                    samples.append(current)
                continue
            frame = FRAME.match(line)
            if frame and current is not None:
                dso = Path(frame["dso"]).name
                current.frames.append(f"{frame['sym']} [{dso}]")
    return samples


def telling(frames: list[str], depth: int) -> str:
    """The innermost ``depth`` frames worth reading (interpreter plumbing skipped)."""
    kept = [f for f in frames if not f.startswith(INTERPRETER) and "[unknown]" not in f]
    return " ← ".join(kept[:depth]) or " ← ".join(frames[:depth])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stalls", type=Path, help="the soak's --stall-log")
    parser.add_argument("samples", type=Path, help="perf script output")
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--top", type=int, default=3, help="stacks shown per thread and stall")
    parser.add_argument("--min-ms", type=float, default=250.0)
    args = parser.parse_args()
    stalls = [json.loads(line) for line in args.stalls.read_text().splitlines() if line.strip()]
    stalls = [s for s in stalls if s["ms"] >= args.min_ms]
    windows = {int(tid) for stall in stalls for tid, name in stall["threads"].items() if name == "MainThread"}
    samples = read_samples(args.samples, windows)
    samples.sort(key=lambda s: s.time)
    times = [s.time for s in samples]
    overall: Counter[str] = Counter()
    for stall in stalls:
        names = {int(tid): name for tid, name in stall["threads"].items()}
        window = next(tid for tid, name in names.items() if name == "MainThread")  # its tid is the pid
        low = bisect.bisect_left(times, stall["stall_from"])
        high = bisect.bisect_right(times, stall["stall_to"])
        inside = [s for s in samples[low:high] if s.pid == window]  # Qt's and Chromium's threads too
        by_thread: dict[str, Counter[str]] = defaultdict(Counter)
        for sample in inside:
            name = names.get(sample.tid, f"{sample.comm} (native)")
            by_thread[name][telling(sample.frames, args.depth)] += 1
        print(f"\n== stall of {stall['ms']:.0f} ms (watchdog: {stall.get('where') or 'not caught'}); "
              f"{len(inside)} samples of the window's threads")
        for name, stacks in sorted(by_thread.items(), key=lambda kv: -sum(kv[1].values())):
            print(f"  {name}: {sum(stacks.values())} samples")
            for stack, n in stacks.most_common(args.top):
                print(f"    {n:3d}  {stack}")
        for stack, n in by_thread.get("MainThread", Counter()).items():
            overall[stack] += n
    print(f"\n== the GUI thread over all {len(stalls)} stalls, most common:")
    for stack, n in overall.most_common(15):
        print(f"  {n:4d}  {stack}")


if __name__ == "__main__":
    main()
