"""bench/candidates.py: models scored against references and teachers on a tiny synthetic
corpus (MSAF layout with an id list, a corrupt file, and a flat folder without references)."""

from __future__ import annotations

import csv
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import load_bench
from msaf_learned_ssm.examples import write_synthetic_corpus



@pytest.fixture(scope="module")
def bench():
    yield load_bench("candidates")
    sys.modules.pop("bench_candidates", None)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """``labelled``: MSAF layout, t0, t1 and a corrupt ``broken.wav`` (with a reference);
    ``flat``: one track's audio alone in a folder (no references)."""
    root = tmp_path_factory.mktemp("candidates")
    labelled = write_synthetic_corpus(root / "labelled", n_tracks=2, section_sec=8.0)
    (labelled / "audio" / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00not audio at all")
    shutil.copy(labelled / "references" / "t0.jams", labelled / "references" / "broken.jams")
    (root / "ids.txt").write_text("t0\nt1\nbroken\nnot_there  # listed, no audio\n")
    flat = root / "flat"
    flat.mkdir()
    shutil.copy(labelled / "audio" / "t1.wav", flat / "u1.wav")
    return labelled, root / "ids.txt", flat


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_scores_references_and_teachers_and_skips_a_corrupt_file(
        bench, corpora, untrained_model_path, tmp_path, capsys):
    labelled, ids, flat = corpora
    out, table = tmp_path / "report.md", tmp_path / "tracks.csv"
    code = bench.main(["--models", "author-nbatt1", str(untrained_model_path),
                       "--corpus", str(labelled), "--ids", str(ids), "--corpus", str(flat),
                       "--teachers", "author-nbatt1", "--out", str(out), "--csv", str(table)])
    assert code == 0
    printed = capsys.readouterr()
    skipped = [line for line in (printed.out + printed.err).splitlines()
               if line.startswith("skipped:")]
    assert any("broken.wav" in line for line in skipped)
    assert any("not_there" in line for line in skipped)
    report = out.read_text()
    assert "python bench/candidates.py --models author-nbatt1" in report
    model_rows = [line for line in report.splitlines() if line.startswith("| `")]
    for name in ("author-nbatt1", untrained_model_path.name):
        # one row in the reference table and one in the teacher table
        assert sum(name in line for line in model_rows) == 2
    assert "| `author-nbatt1` † |" in report  # a teacher itself: flagged as not independent
    assert "s per file" in report
    assert "- Beats and downbeats (`bar`, beat-grid models): package: beats.pt sha256:" \
        in report
    rows = _rows(table)
    assert {r["track"] for r in rows if r["against"] == "reference"} == {"t0", "t1"}
    assert {r["track"] for r in rows if r["against"] == "teachers"} == {"t0", "t1", "u1"}
    for r in rows:
        for key in ("HR0.5F", "HR3F"):
            assert 0.0 <= float(r[key]) <= 1.0
    for r in rows:
        if r["against"] == "teachers" and r["model"] == "author-nbatt1":
            assert float(r["HR3F"]) == pytest.approx(1.0, abs=1e-6)
            assert float(r["ssm_r"]) == pytest.approx(1.0, abs=1e-6)
    # HR0.5F / HR3F cells: 2 models x (1 corpus x 2 placements + 2 corpora x 2 placements)
    cells = [c for line in model_rows for c in re.findall(r"(\d\.\d{3}) / (\d\.\d{3})", line)]
    assert len(cells) == 2 * (2 + 4)
    assert all(0.0 <= float(v) <= 1.0 for c in cells for v in c)


def test_reused_teacher_outputs_equal_teacher_outputs(bench, corpora):
    """A teacher that is also a candidate is not run twice: its analysis stands in for it,
    equal to what teacher_outputs gives."""
    from msaf_learned_ssm.audio import load_audio
    from msaf_learned_ssm.features import compute_patches
    from msaf_learned_ssm.inference import Analyzer
    from msaf_learned_ssm_training.teachers import load_teachers, teacher_outputs

    labelled, _, _ = corpora
    teachers = bench.Teachers(load_teachers(["author-nbatt1", "author-nbatt3"]),
                              ["author-nbatt1", "author-nbatt3"])
    analyzer = Analyzer("author-nbatt1", "cpu")
    patches = compute_patches(load_audio(labelled / "audio" / "t0.wav"), analyzer.config)
    known = {analyzer.identity["sha256"]: analyzer.analyze_patches(patches)}
    ssm, novelty = bench.mean_teacher_outputs(teachers, patches, known)
    ref_ssm, ref_novelty = teacher_outputs(teachers.models, patches.data)
    np.testing.assert_allclose(ssm, ref_ssm, atol=1e-5)
    np.testing.assert_allclose(novelty, ref_novelty, atol=1e-5)


def test_unlabelled_corpus_uses_the_default_teachers(bench, corpora, tmp_path, capsys):
    _, _, flat = corpora
    out, ids = tmp_path / "report.md", tmp_path / "ids.txt"
    ids.write_text("u1\n")
    assert bench.main(["--models", "pop909-piano", "--corpus", f"{flat}:{ids}",
                       "--out", str(out)]) == 0
    report = out.read_text()
    assert "1 listed, 1 with audio; scored: 1 against the teachers" in report
    assert "Agreement with the teachers (author-nbatt1 + author-nbatt3)" in report
    assert "Against the references" not in report


def test_bad_inputs_are_one_line_errors(bench, corpora, tmp_path, capsys):
    labelled, _, _ = corpora
    out = tmp_path / "report.md"
    assert bench.main(["--models", "author-nbatt1", "--corpus", str(tmp_path / "nowhere"),
                       "--out", str(out)]) == 2
    assert bench.main(["--models", str(tmp_path / "missing.pt"), "--corpus", str(labelled),
                       "--out", str(out)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("error: ") for e in errors)
    assert "nowhere" in errors[0] and "missing.pt" in errors[1]
    assert not out.exists()


def test_madmom_tracker_gives_the_beats(bench, corpora, tmp_path, monkeypatch):
    """--tracker madmom: the beats (bar placement, beat-grid models) come from madmom,
    tracked from the audio at 44.1 kHz (a stand-in here: madmom is an optional install)."""
    from msaf_learned_ssm import ModelConfig, madmom_beats
    from msaf_learned_ssm.beats import Beats

    calls = []

    class Grid:
        name = "madmom"

        def track(self, y, sample_rate):
            calls.append(sample_rate)
            times = np.arange(0.25, len(y) / sample_rate, 0.5)
            return Beats(times, np.arange(len(times)) % 3 + 1)

    monkeypatch.setattr(madmom_beats, "import_madmom", lambda: None)
    monkeypatch.setattr(madmom_beats, "shared_madmom_tracker", Grid)
    labelled, ids, _ = corpora
    audio = labelled / "audio" / "t0.wav"
    config = ModelConfig()
    patches, beats = bench.file_inputs(audio, {bench.frontend_key(config): config}, Grid(),
                                       bench.Stopwatch())
    assert calls == [44100]
    np.testing.assert_allclose(beats.times[:3], [0.25, 0.75, 1.25])
    assert all(p.beats is beats for p in patches.values())
    assert bench.main(["--models", "author-nbatt1", "--corpus", str(labelled), "--ids",
                       str(ids), "--tracker", "madmom", "--out", str(tmp_path / "r.md")]) == 0
    assert len(calls) == 3  # t0, t1 (the corrupt file fails before its beats)
    assert "--tracker madmom" in (tmp_path / "r.md").read_text()
    # --beat-cache: madmom runs once per audio content; the second run reads the cache.
    cache = tmp_path / "beats"
    for run in range(2):
        assert bench.main(["--models", "author-nbatt1", "--corpus", str(labelled), "--ids",
                           str(ids), "--tracker", "madmom", "--beat-cache", str(cache),
                           "--out", str(tmp_path / f"c{run}.md")]) == 0
    assert len(calls) == 5 and len(list(cache.glob("*.npz"))) == 2
    assert "- Beats and downbeats (`bar`, beat-grid models): madmom " in \
        (tmp_path / "c1.md").read_text()
    first, second = ((tmp_path / f"c{run}.md").read_text() for run in range(2))
    assert first.split("## Tracks")[0].split("## Against")[1] == \
        second.split("## Tracks")[0].split("## Against")[1]


def test_an_ensemble_holding_a_teacher_is_flagged(bench):
    from types import SimpleNamespace

    def candidate(sha, members=None):
        meta = {"members": members} if members else {}
        return SimpleNamespace(analyzer=SimpleNamespace(identity={"sha256": sha}, meta=meta))

    teachers = {"aaaa", "bbbb"}
    assert bench._holds_teacher(candidate("aaaa"), teachers)
    assert bench._holds_teacher(candidate("cccc", ["author-nbatt1 sha256:bbbb",
                                                   "x.pt sha256:dddd"]), teachers)
    assert not bench._holds_teacher(candidate("cccc", ["x.pt sha256:dddd"]), teachers)
    assert not bench._holds_teacher(candidate("cccc"), teachers)


def test_all_names_every_shipped_model_once(bench):
    from msaf_learned_ssm.model_files import DEFAULT_MODEL, NAMED_MODELS

    every = bench.expand_models(["all"])
    assert every[0] == "default" and DEFAULT_MODEL not in every
    assert sorted(every[1:]) == sorted(set(NAMED_MODELS) - {DEFAULT_MODEL})
    mixed = bench.expand_models(["runs/x.pt", "author-nbatt1", "all"])
    assert mixed[:2] == ["runs/x.pt", "author-nbatt1"]
    assert len(mixed) == len(set(mixed)) == len(every) + 1
