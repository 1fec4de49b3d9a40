"""bench/beat_tracking.py: beat trackers scored on any corpus with beat references (the
command the held-out real recordings are scored with, issue 25)."""

from __future__ import annotations

import csv
import shutil
import sys

import jams
import numpy as np
import pytest

from conftest import load_bench, write_click_track_corpus

@pytest.fixture(scope="module")
def bench():
    yield load_bench("beat_tracking")
    sys.modules.pop("bench_beat_tracking", None)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Two click tracks with beat references, one whose reference has no beat annotation,
    and one with beats but no bar positions."""
    root = write_click_track_corpus(tmp_path_factory.mktemp("beats") / "corpus", n=4)
    no_beats = jams.load(str(root / "references" / "t2.jams"), validate=False)
    no_beats.annotations = jams.AnnotationArray(
        [a for a in no_beats.annotations if a.namespace != "beat"])
    no_beats.save(str(root / "references" / "t2.jams"))
    no_bars = jams.load(str(root / "references" / "t3.jams"), validate=False)
    beat = no_bars.search(namespace="beat")[0]
    unpositioned = jams.Annotation(namespace="beat", duration=no_bars.file_metadata.duration)
    for obs in beat.data:
        unpositioned.append(time=obs.time, duration=0.0, value=None)
    no_bars.annotations = jams.AnnotationArray(
        [a for a in no_bars.annotations if a.namespace != "beat"] + [unpositioned])
    no_bars.save(str(root / "references" / "t3.jams"), strict=False)
    shutil.copy(root / "audio" / "t0.wav", root / "audio" / "unreferenced.wav")
    return root


def test_scores_each_tracker_and_reports_what_it_skips(bench, corpus, tmp_path, capsys):
    out, rows_file = tmp_path / "beats.md", tmp_path / "beats.csv"
    code = bench.main(["--corpus", str(corpus), "--trackers", "package", "librosa",
                       "--windows", "0.07", "0.15", "--jobs", "1", "--out", str(out),
                       "--csv", str(rows_file)])
    assert code == 0
    printed = capsys.readouterr()
    skipped = [line for line in printed.err.splitlines() if line.startswith("skipped")]
    assert any("t2.jams: no beat annotation" in line for line in skipped)
    assert any("unreferenced.wav: no reference JAMS" in line for line in skipped)
    report = out.read_text()
    assert "python bench/beat_tracking.py --corpus" in report
    table = [line for line in report.splitlines() if line.startswith("| corpus |")
             or line.startswith(f"| {corpus.name} |")]
    assert "beat F 150 ms" in table[0] and "downbeat F 70 ms" in table[0]
    assert [line.split(" | ")[1] for line in table[1:]] == ["package", "librosa"]
    with open(rows_file, newline="") as handle:
        rows = list(csv.DictReader(handle))
    # t0, t1 and t3 scored by two trackers at two windows
    assert {r["track"] for r in rows} == {"t0", "t1", "t3"}
    assert len(rows) == 3 * 2 * 2
    package = {(r["track"], r["window"]): r for r in rows if r["tracker"] == "package"}
    # clicks: the shipped tracker finds the beats (the 150 ms window is never stricter)
    for track in ("t0", "t1"):
        assert float(package[track, "0.0700"]["beat_F"]) > 0.8
        assert (float(package[track, "0.1500"]["beat_F"])
                >= float(package[track, "0.0700"]["beat_F"]))
        assert 0.0 <= float(package[track, "0.1500"]["downbeat_F"]) <= 1.0
    # no bar positions in t3's reference: no downbeat score, the beats still count
    assert package["t3", "0.1500"]["downbeat_F"] == "nan"
    assert float(package["t3", "0.1500"]["beat_F"]) > 0.8


def test_worker_processes_give_the_same_rows_and_report_a_broken_file(bench, corpus, tmp_path,
                                                                      capsys):
    broken = tmp_path / "broken"
    shutil.copytree(corpus, broken)
    (broken / "audio" / "t1.wav").write_bytes(b"RIFF\x10\x00\x00\x00not audio at all")
    tables = {}
    for jobs in ("1", "2"):
        rows_file = tmp_path / f"rows{jobs}.csv"
        assert bench.main(["--corpus", str(broken), "--trackers", "package", "--jobs", jobs,
                           "--csv", str(rows_file)]) == 0
        assert any("t1.wav" in line and line.startswith("skipped")
                   for line in capsys.readouterr().err.splitlines())
        with open(rows_file, newline="") as handle:
            tables[jobs] = [{k: v for k, v in r.items() if k != "seconds"}
                            for r in csv.DictReader(handle)]
    assert tables["1"] == tables["2"]  # same tracks, same order, same scores
    assert {r["track"] for r in tables["2"]} == {"t0", "t3"}


def test_madmom_named_without_the_extra_is_one_clear_error(bench, corpus, capsys,
                                                           monkeypatch):
    from msaf_learned_ssm import madmom_beats
    from msaf_learned_ssm.errors import ConfigError

    def missing():
        raise ConfigError("madmom is not installed: pip install 'msaf-learned-ssm[madmom]'")

    monkeypatch.setattr(madmom_beats, "import_madmom", missing)
    monkeypatch.setattr(madmom_beats, "madmom_available", lambda: False)
    assert bench.main(["--corpus", str(corpus), "--trackers", "madmom"]) == 1
    assert "msaf-learned-ssm[madmom]" in capsys.readouterr().err
    # by default (no --trackers) madmom's rows are left out with one line
    assert bench.load_trackers(["package", "auto-madmom"], None, None, print)[0].name \
        == "package"
    assert len(bench.load_trackers(["auto-madmom"], None, None, print)) == 0
    assert "left out" in capsys.readouterr().out


def test_tempo_relation_and_missing_bars(bench):
    ref = np.arange(0, 20, 0.5)
    assert bench.tempo_relation(ref, ref) == "same"
    assert bench.tempo_relation(ref, np.arange(0, 20, 1.0)) == "half"
    assert bench.tempo_relation(ref, np.arange(0, 20, 0.25)) == "double"
    assert bench.tempo_relation(ref, np.arange(0, 20, 0.7)) == "other"
    (window, beat_f, down_f, relation), = bench.score_track(
        ref, np.zeros(len(ref), int), (ref, np.arange(len(ref)) % 4 + 1), [0.07])
    assert (window, beat_f, relation) == (0.07, 1.0, "same") and np.isnan(down_f)


class _ClosedPipe:
    """stdout of ``... | head`` once head has exited."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        pass


def test_a_closed_stdout_loses_no_file(bench, corpus, tmp_path, monkeypatch):
    out, rows_file = tmp_path / "beats.md", tmp_path / "beats.csv"
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    with pytest.raises(BrokenPipeError):
        bench.main(["--corpus", str(corpus), "--trackers", "package", "--jobs", "1",
                    "--out", str(out), "--csv", str(rows_file)])
    assert "| package |" in out.read_text() and "beat_F" in rows_file.read_text()
