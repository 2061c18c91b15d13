"""The plain-point fast path of the GPX reader gives exactly the messages the XML parser gives,
whatever the file mixes in (checked against the same file read with the fast path switched off
by a comment, which makes the parser read everything)."""

from __future__ import annotations

import pytest

from app.store import import_gpx
from app.store.import_gpx import GpxReader
from app.store.import_summary import ImportSummary

HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n<gpx version="1.1" creator="t" '
        'xmlns="http://www.topografix.com/GPX/1/1" '
        'xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v2">\n')
BODY = (
    '<wpt lat="1.5" lon="2.5"><name>Start &amp; finish</name></wpt>\n'
    "<trk><name>Ride ünïcode</name><trkseg>\r\n"
    + "".join(f'<trkpt lat="48.{i:04d}" lon="11.{i:04d}"><ele>{500 + i}</ele><time>2025-05-01T06:00:{i:02d}Z</time>'
              "<extensions><gpxtpx:TrackPointExtension><gpxtpx:hr>130</gpxtpx:hr><gpxtpx:speed>2.5</gpxtpx:speed>"
              "</gpxtpx:TrackPointExtension></extensions></trkpt>\r\n" for i in range(30))
    + '<trkpt lat="48.1" lon="11.1"><desc>a &lt;b&gt; c</desc><time>2025-05-01T06:01:00Z</time></trkpt>\n'
    + '<trkpt lon="11.2" lat="48.2"><time>2025-05-01T06:01:01z</time></trkpt>\n'
    + '<trkpt lat="48.3" lon="11.3"><link href="http://x"><text>site</text></link><sat>7</sat></trkpt>\n'
    + '<trkpt lat="48.4" lon="11.4"><ele></ele><name>it\'s</name></trkpt>\n'
    + '<trkpt lat="bad" lon="11.5"/>\n'
    + "".join(f'<trkpt lat="-33.{i}" lon="151.{i}"><time>2025-05-01T07:00:{i:02d}.5Z</time></trkpt>' for i in range(9))
    + "</trkseg></trk>\n"
    "<trk><name>Ride ünïcode</name><trkseg>"
    '<trkpt lat="1" lon="2"><time>2025-05-01T08:00:00Z</time></trkpt></trkseg></trk>\n'
    '<trackmon-plain-run key="guess" n="0"/>\n'
    '<rte><name>Route</name><rtept lat="5" lon="6"><name>A</name></rtept></rte>\n'
    "</gpx>\n")


def read(path) -> tuple[list[dict], ImportSummary]:
    summary = ImportSummary(file=path.name)
    return list(GpxReader(path, summary).messages()), summary


@pytest.mark.parametrize("block", [1 << 22, 97, 1024])
def test_fast_path_gives_the_parsers_messages(tmp_path, monkeypatch, block) -> None:
    monkeypatch.setattr(import_gpx, "FEED_BLOCK", block)  # points and characters cut across reads
    (tmp_path / "fast").mkdir()
    (tmp_path / "slow").mkdir()
    fast, slow = tmp_path / "fast" / "ride.gpx", tmp_path / "slow" / "ride.gpx"
    fast.write_bytes((HEAD + BODY).encode())
    slow.write_bytes((HEAD + "<!-- the parser reads everything -->\n" + BODY).encode())
    got, summary = read(fast)
    expected, expected_summary = read(slow)
    assert got == expected and summary == expected_summary
    assert len(got) == 47 and got[1]["gpx.hr"] == 130.0 and got[1]["position.speed"] == 9.0
    assert got[1]["device.name"] == "Ride ünïcode" and got[-2]["ident"] == "Ride ünïcode (2)"
    assert summary.not_imported["<trackmon-plain-run> element"] == 1  # a look-alike in the file is data
    # The parser saw the plain points as a few runs, not as elements of their own.
    fast_events = sum(1 for _ in import_gpx._events(fast, {}, "k"))
    slow_events = sum(1 for _ in import_gpx._events(slow, {}, "k"))
    assert fast_events < slow_events / 3


def test_a_point_that_looks_plain_inside_a_comment_is_not_imported(tmp_path) -> None:
    path = tmp_path / "comment.gpx"
    path.write_text(HEAD + '<trk><trkseg><trkpt lat="1" lon="1"></trkpt>\n<!-- <trkpt lat="9" lon="9"></trkpt> -->'
                    '<trkpt lat="2" lon="2"></trkpt></trkseg></trk></gpx>')
    messages, _ = read(path)
    assert [m["position.latitude"] for m in messages] == [1.0, 2.0]


def test_other_encodings_go_to_the_parser(tmp_path) -> None:
    path = tmp_path / "latin1.gpx"
    path.write_bytes(HEAD.replace("UTF-8", "ISO-8859-1").encode() + "<trk><name>Café</name><trkseg>"
                     '<trkpt lat="1" lon="2"><time>2025-05-01T06:00:00Z</time></trkpt></trkseg></trk></gpx>'
                     .encode("latin-1"))
    messages, _ = read(path)
    assert messages[0]["device.name"] == "Café" and messages[0]["timestamp"] == 1746079200.0
