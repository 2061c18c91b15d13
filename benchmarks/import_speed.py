"""Import speed and memory: a generated GPX file (Garmin-style points with time, elevation and
heart rate) and the CSV trackmon exports of it, imported into a fresh recording.

Each step runs in its own process so its peak RSS (VmHWM) is its own; an import of a large file
parses it in a second process (`app.store.import_process`), whose peak RSS is printed too.
Baseline in the same run: a plain streaming parse of the same file that builds nothing
(ElementTree iterparse for GPX, csv.reader for CSV) — what any importer has to pay.

    .venv/bin/python benchmarks/import_speed.py [--points 2000000] [--tracks 4]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import csv, sys, time
import xml.etree.ElementTree as ET
sys.path.insert(0, {root!r})
path, mode, db = sys.argv[1], sys.argv[2], sys.argv[3]
started, cpu = time.perf_counter(), time.process_time()
if mode == "parse-gpx":
    n = 0
    for _event, element in ET.iterparse(path):
        if element.tag.endswith("trkpt"):
            n += 1
            element.clear()
elif mode == "parse-csv":
    with open(path, newline="", encoding="utf-8") as handle:
        n = sum(1 for _ in csv.reader(handle)) - 1
else:
    from pathlib import Path
    from app.store.importers import import_file
    n = import_file(Path(db), Path(path)).points
elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
import resource
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM")][0].split()[1]
children = resource.getrusage(resource.RUSAGE_CHILDREN)
print(n, elapsed, int(hwm) / 1024, children.ru_maxrss / 1024, max(cpu, children.ru_utime + children.ru_stime))
"""


def write_gpx(path: Path, points: int, tracks: int) -> None:
    """A GPX 1.1 file like a Garmin device writes, ``tracks`` tracks of equal length."""
    start = 1_746_079_200
    per_track = points // tracks
    with open(path, "w", encoding="utf-8") as out:
        out.write('<?xml version="1.0" encoding="UTF-8"?>\n<gpx version="1.1" creator="bench" '
                  'xmlns="http://www.topografix.com/GPX/1/1" '
                  'xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v1">\n')
        for t in range(tracks):
            out.write(f"<trk><name>Ride {t}</name><trkseg>\n")
            lines = []
            for i in range(per_track):
                ts = start + t * per_track + i
                lines.append(
                    f'<trkpt lat="{48 + i * 1e-5:.6f}" lon="{11 + t * 0.01 + i * 1e-5:.6f}"><ele>{500 + i % 50}</ele>'
                    f"<time>{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(ts))}</time><extensions>"
                    f"<gpxtpx:TrackPointExtension><gpxtpx:hr>{120 + i % 40}</gpxtpx:hr>"
                    "</gpxtpx:TrackPointExtension></extensions></trkpt>\n")
                if len(lines) >= 10_000:
                    out.write("".join(lines))
                    lines.clear()
            out.write("".join(lines) + "</trkseg></trk>\n")
        out.write("</gpx>\n")


def run(path: Path, mode: str, db: Path) -> tuple[int, float, float, float, float]:
    """(points, seconds, peak RSS, the parser process's peak RSS, CPU seconds of the busier process)."""
    result = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT)), str(path), mode, str(db)],
                            capture_output=True, text=True, check=True)
    n, elapsed, rss, parser_rss, cpu = result.stdout.split()
    return int(n), float(elapsed), float(rss), float(parser_rss), float(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=2_000_000)
    parser.add_argument("--tracks", type=int, default=4)
    args = parser.parse_args()
    print(f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores, "
          f"{args.points:,} points in {args.tracks} tracks")
    with tempfile.TemporaryDirectory() as tmp:
        gpx, db = Path(tmp) / "bench.gpx", Path(tmp) / "bench.sqlite"
        write_gpx(gpx, args.points, args.tracks)
        print(f"GPX file: {gpx.stat().st_size / 1e6:.0f} MB")
        rows = []
        for label, mode in (("GPX plain parse (baseline)", "parse-gpx"), ("GPX import", "import")):
            rows.append((label, *run(gpx, mode, db)))
        csv_path = Path(tmp) / "bench.csv"
        export = ("import sqlite3, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
                  "from app.store.export_file import export_file; from app.store.points import PointFilter; "
                  "export_file(sqlite3.connect(sys.argv[2]), 'csv', PointFilter(1), Path(sys.argv[3]))")
        subprocess.run([sys.executable, "-c", export, str(ROOT), str(db), str(csv_path)], check=True)
        print(f"CSV file: {csv_path.stat().st_size / 1e6:.0f} MB")
        db2 = Path(tmp) / "bench2.sqlite"
        for label, mode in (("CSV plain parse (baseline)", "parse-csv"), ("CSV import", "import")):
            rows.append((label, *run(csv_path, mode, db2)))
        # "cpu-bound": points per CPU second of the busier of the two processes (importer, parser):
        # the rate two free cores would give; on a shared machine it moves less than the wall clock.
        print(f"{'step':<28} {'points':>10} {'seconds':>8} {'points/s':>10} {'vs baseline':>11} "
              f"{'cpu-bound/s':>11} {'vs baseline':>11} {'peak RSS MB':>12} {'parser RSS MB':>13}")
        baseline = cpu_baseline = 0.0
        for label, n, elapsed, rss, parser_rss, cpu in rows:
            rate, cpu_rate = n / elapsed, n / cpu
            if "baseline" in label:
                baseline, cpu_baseline = rate, cpu_rate
            print(f"{label:<28} {n:>10,} {elapsed:>8.1f} {rate:>10,.0f} {rate / baseline:>11.2f} {cpu_rate:>11,.0f} "
                  f"{cpu_rate / cpu_baseline:>11.2f} {rss:>12.0f} {parser_rss if 'import' in label else 0:>13.0f}")


if __name__ == "__main__":
    main()
