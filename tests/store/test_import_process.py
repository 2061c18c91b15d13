"""Every import test again, with each file parsed in the second process (as large files are),
and the child stopped when the import stops reading."""

from __future__ import annotations

import contextlib
import time

import psutil
import pytest

from app.store import import_process
from app.store.import_summary import ImportSummary
from tests.store.test_import_files import (  # noqa: F401 (collected here again, with the fixture below)
    GPX_HEAD,
    START,
    test_a_failed_import_leaves_nothing_and_never_is_the_most_recent_session,
    test_a_longer_recording_after_its_first_part_and_repeated_segments_keep_every_point,
    test_both_csv_profiles_and_guarded_names_import_back_as_they_were,
    test_csv_files_from_excel_huge_cells_missing_times_and_broken_quotes,
    test_every_rfc3339_time_form_is_read_and_untimed_points_are_kept_flagged_and_counted,
    test_routes_waypoints_extensions_and_same_named_tracks_are_imported_and_summarised,
    trkpts,
)


@pytest.fixture(autouse=True)
def parse_in_a_child_process(monkeypatch) -> None:
    monkeypatch.setattr(import_process, "MIN_BYTES", 0)


def parsing_under_way(tmp_path, points: int):
    """A long GPX file's import, its first batch read: (the batches still to come, the parser
    process, the file)."""
    path = tmp_path / "long.gpx"
    path.write_text(GPX_HEAD + "<trk><trkseg>" + trkpts(points) + "</trkseg></trk></gpx>", encoding="utf-8")
    before = {p.pid for p in psutil.Process().children()}
    batches = import_process.parsed_batches(path, ImportSummary(file=path.name), 1000)
    assert len(next(batches)) == 1000
    children = [p for p in psutil.Process().children() if p.pid not in before]
    assert len(children) == 1
    return batches, children[0], path


def test_the_child_is_stopped_when_the_import_stops_reading(tmp_path) -> None:
    batches, child, path = parsing_under_way(tmp_path, 20_000)
    batches.close()  # what a failed write or a cancelled import does
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    summary = ImportSummary(file=path.name)
    assert sum(len(b) for b in import_process.parsed_batches(path, summary, 1000)) == 20_000
    assert summary.track_points == 20_000 and summary.tracks == 1


def test_a_parser_process_that_dies_is_said_in_words(tmp_path) -> None:
    """Killed mid-file (out of memory, say): the import fails saying so, not with a bare '?'."""
    batches, child, _ = parsing_under_way(tmp_path, 50_000)
    child.kill()
    with pytest.raises(OSError, match=r"the import's parser process was killed \(SIGKILL; out of memory"):
        for _ in batches:
            pass


def test_every_point_arrives_when_the_parser_is_stopped_and_continued_mid_write(tmp_path, monkeypatch) -> None:
    """Ctrl+Z and `fg` under PYTHONUNBUFFERED=1 (`store/module_process.binary_stdout`): a batch
    written into a full pipe was cut short, and the import failed on the garbage after it."""
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    batches, child, _ = parsing_under_way(tmp_path, 60_000)
    seen = 1000
    for batch in batches:
        time.sleep(0.01)  # the recorder busy: the child's writes wait on a full pipe
        seen += len(batch)
        with contextlib.suppress(psutil.NoSuchProcess):
            child.suspend()
            time.sleep(0.001)
            child.resume()
    assert seen == 60_000
