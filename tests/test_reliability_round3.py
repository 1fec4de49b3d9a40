"""Reliability, round 3 (issue 23, items 1-16): no result of one input is ever reported for
another, a resumed run is the same run, and every misuse is a one-line error.

Items 1-9 each show that nothing was lost or mixed: the earlier result is intact, or the
new one equals a fresh run's."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

import msaf
import msaf_learned_ssm  # noqa: F401  (registers the plugin in MSAF)
from msaf_learned_ssm import ModelConfig
from msaf_learned_ssm.checkpoint import load_model, read_checkpoint
from msaf_learned_ssm.cli import main
from msaf_learned_ssm.config import PEAK_MAX_SEC, PeakConfig
from msaf_learned_ssm.errors import CheckpointError, ConfigError, LearnedSSMError, OutputError
from msaf_learned_ssm.examples import synthesize_sections, write_synthetic_corpus
from msaf_learned_ssm.fileio import atomic_write_text, audio_identity
from msaf_learned_ssm.inference import Analyzer
from msaf_learned_ssm.model_files import file_sha256
from msaf_learned_ssm.peaks import pick_peaks
from msaf_learned_ssm_jams.segments import read_segments
from msaf_learned_ssm_training.corpus import Track, find_tracks, split_tracks
from msaf_learned_ssm_training.trainer import (TrainConfig, corpus_changes, corpus_record,
                                               run_paths, train)

from conftest import ROOT

SR = 22050
TINY = ModelConfig(attention_layers=1)
#: The run the training tests share: what `T` of the issue makes (1 attention layer, 50
#: patches a step, a quarter held out, seed 0), one epoch.
RUN_CONFIG = TrainConfig(epochs=1, max_patches=50, seed=0)


def _cli(*args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CliRunner().invoke(main, [*map(str, args)])


def _errors(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("error:")]


def _write(path: Path, form: str, section_sec: float, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, synthesize_sections(form, section_sec, seed=seed)[0], SR)
    return path


# ---------------------------------------------------------------- training (items 3-7, 10, 12, 13, 16)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_synthetic_corpus(tmp_path_factory.mktemp("r3corpus"), 4, section_sec=6.0,
                                  seed=3)


@pytest.fixture(scope="module")
def finished_run(corpus, tmp_path_factory):
    """A 1-epoch run at ``run/modelA`` (no ``.pt``), on the split the command line makes
    with ``--val-split 0.25 --seed 0``, and its feature cache."""
    root = tmp_path_factory.mktemp("r3run")
    tracks, val = split_tracks(find_tracks(corpus), 0.25, 0)
    out = root / "run" / "modelA"
    train(tracks, val, out, TINY, RUN_CONFIG, cache_dir=root / "cache", device="cpu",
          progress=False)
    return out, root / "cache"


def _copy_run(finished_run, tmp_path) -> Path:
    out, _ = finished_run
    shutil.copytree(out.parent, tmp_path / "run")
    return tmp_path / "run" / out.name


def _train_cli(corpus, out, cache, *extra):
    return _cli("train", corpus, "--out", out, "--val-split", "0.25", "--device", "cpu",
                "--attention-layers", "1", "--max-patches", "50", "--data-threads", "0",
                "--cache-dir", cache, *extra)


def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]), OMP_NUM_THREADS="1")


def test_item3_a_second_training_of_one_run_refuses_and_names_the_first(corpus, tmp_path,
                                                                        finished_run):
    out, cache = tmp_path / "runs" / "dual.pt", finished_run[1]
    first = subprocess.Popen(
        [sys.executable, "-m", "msaf_learned_ssm.cli", "train", str(corpus), "--out", str(out),
         "--val-split", "0.25", "--device", "cpu", "--attention-layers", "1",
         "--max-patches", "50", "--data-threads", "0", "--cache-dir", str(cache),
         "--epochs", "1", "--seed", "0"], env=_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        owner = out.with_name(".dual.state.pt.lock.pid")
        deadline = time.monotonic() + 120
        while not owner.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert owner.exists(), "the first run never took its lock"
        second = _train_cli(corpus, out, cache, "--epochs", "1", "--seed", "5")
        assert second.exit_code == 2 and "Traceback" not in second.output
        errors = _errors(second)
        assert len(errors) == 1 and "another training" in errors[0]
        assert f"process {first.pid}" in errors[0]
        _, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr
    # The first run is whole and its own: one epoch, seed 0, a loadable model; the second
    # wrote nothing.
    best, state, log = run_paths(out)
    assert len(log.read_text().splitlines()) == 1
    assert read_checkpoint(state)["train_config"]["seed"] == 0
    load_model(best)
    assert not owner.exists()  # the process id goes with the lock


def test_item4_resume_refuses_a_changed_corpus(corpus, finished_run, tmp_path):
    out = _copy_run(finished_run, tmp_path)
    before = _snapshot(out.parent)
    tracks, val = split_tracks(find_tracks(corpus), 0.25, 0)
    extra = write_synthetic_corpus(tmp_path / "more", 2, section_sec=6.0, seed=11)
    added = [Track(f"new{t.track_id}", t.audio, t.reference) for t in find_tracks(extra)]
    changed = tracks[1:] + added  # one removed, two added
    with pytest.raises(CheckpointError, match="1 removed .* 2 added") as info:
        train(changed, val, out, TINY, RUN_CONFIG, cache_dir=finished_run[1], device="cpu",
              progress=False, resume=True, epochs=2)
    assert "--allow-corpus-change" in str(info.value)
    assert _snapshot(out.parent) == before  # nothing of the run changed
    # The same tracks resume; validation tracks, and their contents, count as well.
    bad_val = [Track(val[0].track_id, tracks[0].audio, val[0].reference)]
    with pytest.raises(CheckpointError, match="validation tracks: 1 changed"):
        train(tracks, bad_val, out, TINY, RUN_CONFIG, cache_dir=finished_run[1],
              device="cpu", progress=False, resume=True, epochs=2)
    # Allowed explicitly: a warning saying what changed, and the run goes on.
    with pytest.warns(UserWarning, match="other tracks than the run started with"):
        result = train(changed, val, out, TINY, RUN_CONFIG, cache_dir=finished_run[1],
                       device="cpu", progress=False, resume=True, epochs=2,
                       allow_corpus_change=True, stop_after_steps=1)
    assert result.stopped == "steps"
    saved = read_checkpoint(run_paths(out)[1])["corpus"]
    assert [row[0] for row in saved["train"]] == [t.track_id for t in changed]


def test_item4_unlabelled_tracks_are_part_of_the_record(corpus, tmp_path):
    tracks = find_tracks(corpus)
    pool = [Track(t.track_id, t.audio, None) for t in tracks[:2]]
    record = corpus_record(tracks[:2], tracks[2:], pool)
    assert record["unlabelled"][0][2] is None and len(record["unlabelled"][0][1]) == 32
    assert corpus_changes(record, corpus_record(tracks[:2], tracks[2:], pool)) == []
    swapped = [Track(pool[0].track_id, tracks[3].audio, None), pool[1]]
    assert corpus_changes(record, corpus_record(tracks[:2], tracks[2:], swapped)) == [
        "unlabelled tracks: 1 changed (t0)"]
    assert corpus_changes(record, corpus_record(tracks[:2], tracks[2:], pool[:1])) == [
        "unlabelled tracks: 1 removed (t1)"]


def test_item5_resume_refuses_options_it_would_not_honour(corpus, finished_run, tmp_path):
    out = _copy_run(finished_run, tmp_path)
    before = _snapshot(out.parent)
    result = _train_cli(corpus, out, finished_run[1], "--resume", "--epochs", "3", "--lr",
                        "1e-3", "--alpha", "0.9", "--attention-layers", "3", "--augment")
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = _errors(result)
    assert len(errors) == 1
    for shown in ("--lr 0.001", "--alpha 0.9", "--augment", "--attention-layers 3",
                  "--lr 0.0001", "--alpha 0.5", "--attention-layers 1"):
        assert shown in errors[0], shown
    assert _snapshot(out.parent) == before
    # Options equal to the run's, and --epochs, are accepted (the run is complete at 1).
    same = _train_cli(corpus, out, finished_run[1], "--resume", "--epochs", "1", "--lr",
                      "1e-4", "--seed", "0")
    assert same.exit_code == 0, same.output
    assert "after 1 epochs" in same.output and f"-> {out}" in same.output


def test_item6_unusable_validation_fails_before_the_first_epoch(corpus, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(corpus, bad)
    (bad / "references" / "t3.jams").write_text("this is not JSON")
    tracks = find_tracks(bad)
    out = tmp_path / "m" / "model.pt"
    with pytest.raises(LearnedSSMError, match="no usable validation track: t3: .*t3.jams"):
        train(tracks[:3], tracks[3:], out, TINY, RUN_CONFIG, cache_dir=tmp_path / "cache",
              device="cpu", progress=False)
    assert not any(p.exists() for p in run_paths(out))  # no epoch ran, nothing selected
    # Only the validation track was read: the training tracks' features were not computed.
    assert len(list((tmp_path / "cache").glob("*.npz"))) <= 1
    # No validation at all is still allowed (the model is then the last epoch's).
    result = train(tracks[:3], [], out, TINY, RUN_CONFIG, cache_dir=tmp_path / "cache",
                   device="cpu", progress=False, stop_after_steps=1)
    assert result.stopped == "steps"


def test_item7_resume_refuses_when_the_best_model_is_missing(corpus, finished_run, tmp_path):
    out = _copy_run(finished_run, tmp_path)
    moved = out.rename(tmp_path / "elsewhere")
    result = _train_cli(corpus, out, finished_run[1], "--resume", "--epochs", "2")
    assert result.exit_code == 2 and "->" not in result.output
    errors = _errors(result)
    assert len(errors) == 1 and "best model (epoch 1) is missing" in errors[0]
    assert not out.exists() and moved.exists()


def test_item7_x_and_x_pt_never_share_a_state(corpus, finished_run, tmp_path):
    out = _copy_run(finished_run, tmp_path)  # the run of run/modelA
    before = _snapshot(out.parent)
    other = out.with_name("modelA.pt")
    assert run_paths(other)[1] == run_paths(out)[1]  # the names coincide...
    for flag in ("--resume", "--overwrite", None):
        result = _train_cli(corpus, other, finished_run[1], "--epochs", "2",
                            *([flag] if flag else []))
        assert result.exit_code == 2, (flag, result.output)
        errors = _errors(result)
        assert len(errors) == 1 and "is the state of the run" in errors[0], flag
    assert _snapshot(out.parent) == before  # ...but modelA's state was never touched
    assert not other.exists()


@pytest.mark.parametrize("value", ["nan", "inf", "1e300", "-1", "0"])
def test_item10_absurd_learning_rates_are_refused_up_front(corpus, tmp_path, value):
    result = _train_cli(corpus, tmp_path / "m.pt", tmp_path / "cache", "--lr", value)
    assert result.exit_code == 2 and "--lr" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "cache").exists()
    with pytest.raises(ConfigError, match="lr must be"):
        TrainConfig(lr=float(value))


def test_item12_a_full_disk_during_the_save_is_one_line(corpus, finished_run, tmp_path):
    out = tmp_path / "full" / "model.pt"
    limit = 64 * 1024  # cache entries exist already; the model and state are larger
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        result = _train_cli(corpus, out, finished_run[1], "--epochs", "1",
                            "--checkpoint-every", "1")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert result.exit_code == 2, (result.output, result.exception)
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and "cannot write the file (File too large)" in last
    assert str(out.with_name("model.state.pt")) in last or str(out) in last
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("value,match", [("", "empty"), ("runs/newdir/", "names a folder")])
def test_items13_16_out_must_name_a_file(corpus, tmp_path, monkeypatch, value, match):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    result = _train_cli(corpus, value, tmp_path / "cache", "--epochs", "1")
    assert result.exit_code == 2 and match in result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]
    assert list((tmp_path / "runs").iterdir()) == []
    with pytest.raises(OutputError, match=match):
        train(find_tracks(corpus)[:3], [], value, TINY, RUN_CONFIG, device="cpu",
              progress=False)


# ---------------------------------------------------------------- segmenting (items 1, 2, 8, 9, 11, 14, 15)


@pytest.fixture(scope="module")
def namesakes(tmp_path_factory):
    """Two different recordings of one name and one duration (45 s), in two folders."""
    root = tmp_path_factory.mktemp("namesakes")
    return (_write(root / "a" / "song.wav", "ABC", 15.0, 0),
            _write(root / "c" / "song.wav", "AAB", 15.0, 5))


def _csv_boundaries(path: Path) -> np.ndarray:
    rows = [line.split(",") for line in path.read_text().splitlines()[1:]]
    return np.unique([float(r[0]) for r in rows] + [float(rows[-1][1])])


def test_item1_dask_rerun_never_keeps_another_files_result(namesakes, model_path, tmp_path):
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster

    from msaf_learned_ssm.collection import segment_collection

    a, c = namesakes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                               dashboard_address=None)
        client = Client(cluster)
    analyzer = Analyzer(model_path, "cpu")
    out = tmp_path / "dk"

    def run(path, fmt="csv", overwrite=False):
        return segment_collection([path], out, client=client, model=str(model_path),
                                  fmt=fmt, device="cpu", progress=False, overwrite=overwrite)
    try:
        assert run(a).done == [str(a)]
        from_a = (out / "song.csv").read_bytes()
        second = run(c)  # another file of the same name: not "already done"
        assert not second.skipped and list(second.failed) == [str(c)]
        assert f"made from {a}" in second.failed[str(c)]
        assert (out / "song.csv").read_bytes() == from_a  # a's result kept, not mixed
        assert run(c, overwrite=True).done == [str(c)]
        np.testing.assert_allclose(_csv_boundaries(out / "song.csv"),
                                   analyzer.analyze(c).boundaries, atol=1e-3)
        assert run(c).skipped == [str(c)]  # unchanged: resumes as before
        # The same file changed in place: its own stale result is redone.
        _write(c, "ABB", 15.0, 9)
        os.utime(c, ns=(time.time_ns(), time.time_ns() + 10 ** 9))
        assert run(c).done == [str(c)]
        np.testing.assert_allclose(_csv_boundaries(out / "song.csv"),
                                   analyzer.analyze(c).boundaries, atol=1e-3)
        # JAMS: another recording's estimations are refused, never mixed in.
        shutil.rmtree(out)
        assert run(a, "jams").done == [str(a)]
        jam_a = (out / "song.jams").read_bytes()
        failed = run(c, "jams").failed
        assert list(failed) == [str(c)] and "holds the estimations of" in failed[str(c)]
        assert (out / "song.jams").read_bytes() == jam_a
    finally:
        client.close()
        cluster.close()


def _dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _msaf_config(model, feature, labels_id="learned_ssm"):
    cfg = msaf.io.get_configuration(feature, False, False, "learned_ssm", labels_id)
    cfg["ssm_model"] = str(model)
    cfg["ssm_device"] = "cpu"
    cfg["features"] = None
    return cfg


def _process(path, model, feature, quiet=True):
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        return msaf.process(str(path), feature=feature, framesync=False,
                            boundaries_id="learned_ssm", labels_id="learned_ssm",
                            config=_msaf_config(model, feature))


def _beats_in_features() -> list:
    return json.loads(Path(msaf.config.features_tmp_file).read_text())["est_beats"]


@pytest.mark.parametrize("feature", ["learned_ssm", "pcp"])
def test_item2_msaf_never_reuses_another_files_features(namesakes, untrained_model_path,
                                                        tmp_path, monkeypatch, feature):
    # MSAF's single-file mode: features in ./.features_msaf_tmp.json (checked by file name
    # and duration only), estimations in <folder of the audio's folder>/estimations/.
    solo, a, c = (shutil.copy(f, _dir(tmp_path / d)) for f, d in
                  ((namesakes[1], "solo/x"), (namesakes[0], "a"), (namesakes[1], "c")))
    monkeypatch.chdir(_dir(tmp_path / "fresh"))
    alone = _process(solo, untrained_model_path, feature)
    beats_alone = _beats_in_features()
    monkeypatch.chdir(_dir(tmp_path / "shared"))
    _process(a, untrained_model_path, feature)
    assert not np.allclose(_beats_in_features()[:10], beats_alone[:10])  # two recordings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        second = _process(c, untrained_model_path, feature, quiet=False)  # same name, length
    np.testing.assert_allclose(_beats_in_features(), beats_alone)  # c's beats, not a's
    np.testing.assert_allclose(second[0], alone[0])
    np.testing.assert_array_equal(second[1], alone[1])
    feats = json.loads(Path(msaf.config.features_tmp_file).read_text())
    assert feats["globals"]["audio_sha256"] == audio_identity(c)["audio_sha256"]
    # The estimation file both share (named after the audio's name) holds c's alone, and
    # a warning says that a's were there.
    jam = json.loads((tmp_path / "estimations" / "song.jams").read_text())
    assert jam["file_metadata"]["identifiers"] == audio_identity(c)
    assert len([x for x in jam["annotations"] if x["namespace"] == "segment_open"]) == 1
    assert any("held the estimations of" in str(w.message) for w in caught)


def test_item8_one_jams_never_mixes_two_recordings(namesakes, model_path, tmp_path):
    a, c = namesakes
    out = tmp_path / "mix.jams"
    assert _cli("segment", a, "--model", model_path, "-o", out, "--device", "cpu",
                "--no-labels").exit_code == 0
    before = out.read_bytes()
    assert json.loads(before)["file_metadata"]["identifiers"] == audio_identity(a)
    result = _cli("segment", c, "--model", model_path, "-o", out, "--device", "cpu",
                  "--no-labels")
    assert result.exit_code == 1
    errors = _errors(result)
    assert len(errors) == 1 and str(a) in errors[0] and str(c) in errors[0]
    assert "--overwrite" in errors[0]
    assert out.read_bytes() == before  # a's estimations, alone and untouched
    # The same audio under another path is the same recording: it is added.
    copy = tmp_path / "copy.wav"
    copy.write_bytes(a.read_bytes())
    assert _cli("segment", copy, "--model", model_path, "-o", out, "--device", "cpu",
                "--no-labels").exit_code == 0
    # --overwrite replaces a's file by c's, whole.
    assert _cli("segment", c, "--model", model_path, "-o", out, "--device", "cpu",
                "--no-labels", "--overwrite").exit_code == 0
    data = json.loads(out.read_text())
    assert data["file_metadata"]["identifiers"] == audio_identity(c)
    intervals, _ = read_segments(out)
    np.testing.assert_allclose(np.unique(intervals.ravel()),
                               Analyzer(model_path, "cpu").analyze(c).boundaries, atol=1e-6)
    assert len([x for x in data["annotations"] if x["namespace"] == "segment_open"]) == 1


def test_item9_msaf_estimations_record_the_model_and_its_settings(namesakes,
                                                                  untrained_model_path,
                                                                  tmp_path, monkeypatch):
    a = shutil.copy(namesakes[0], _dir(tmp_path / "audio"))
    monkeypatch.chdir(tmp_path)
    times, _ = _process(a, untrained_model_path, "learned_ssm")
    jam = json.loads((tmp_path / "estimations" / "song.jams").read_text())
    sandbox = next(x for x in jam["annotations"] if x["namespace"] == "segment_open")["sandbox"]
    assert sandbox["ssm_model"] == "untrained.pt"
    assert sandbox["ssm_model_sha256"] == file_sha256(untrained_model_path)
    assert {k: sandbox[f"ssm_peak_{k}"] for k in PeakConfig().to_dict()} == \
        PeakConfig().to_dict()  # the model file's own (it carries the defaults)
    assert sandbox["ssm_sync"] == "frame"
    assert jam["file_metadata"]["identifiers"] == audio_identity(a)
    # msaf.eval looks estimations up with the config as given: it still finds this one.
    config = {**_msaf_config(untrained_model_path, "learned_ssm"), "hier": False}
    config.pop("features")
    found, _ = msaf.io.read_estimations(str(tmp_path / "estimations" / "song.jams"),
                                        "learned_ssm", "learned_ssm", **config)
    np.testing.assert_allclose(np.unique(found.ravel()), times)


@pytest.mark.parametrize("option,value,name", [
    ("--peak-distance-sec", "1e308", "min_distance_sec"),
    ("--peak-mean-half-sec", "1e300", "mean_half_sec"),
    ("--peak-threshold", "nan", "threshold")])
def test_item11_peak_settings_are_bounded_up_front(namesakes, model_path, tmp_path,
                                                   never_analyse, option, value, name):
    out = tmp_path / "o"
    result = _cli("segment", *namesakes, "--model", model_path, "-o", out, option, value,
                  "--device", "cpu")
    assert result.exit_code == 2 and option in result.output
    assert "Traceback" not in result.output and not out.exists() and never_analyse == []
    with pytest.raises(ConfigError, match=f"PeakConfig.{name}"):
        PeakConfig().updated(**{name: float(value)})
    cfg = {f"ssm_peak_{name}": float(value)}  # the MSAF plugin's edge too
    with pytest.raises(ConfigError, match=f"PeakConfig.{name}"):
        msaf.algorithms.learned_ssm.peak_config(cfg, PeakConfig())


def test_item11_the_longest_peak_windows_still_work():
    novelty = np.random.default_rng(0).random(300)
    peaks = pick_peaks(novelty, 0.5, PeakConfig(PEAK_MAX_SEC, PEAK_MAX_SEC, 1.0))
    assert len(peaks) <= 1
    with pytest.raises(ConfigError, match="longest supported duration"):
        PeakConfig(min_distance_sec=PEAK_MAX_SEC * 2)


@pytest.fixture
def never_analyse(monkeypatch):
    calls = []
    monkeypatch.setattr(Analyzer, "analyze_many", lambda self, *a, **k: calls.append(a) or [])
    return calls


def test_item14_an_unusable_output_folder_fails_before_any_work(namesakes, model_path,
                                                                tmp_path, never_analyse):
    blocker = tmp_path / "results"
    blocker.write_text("a plain file")
    for target in (blocker, blocker / "x.jams"):
        result = _cli("segment", *namesakes[:1], "--model", model_path, "-o", target,
                      "--device", "cpu")
        assert result.exit_code == 2, result.output
        errors = _errors(result)
        assert len(errors) == 1 and "results" in errors[0] and "cannot write" in errors[0]
    assert never_analyse == [] and blocker.read_text() == "a plain file"
    if os.geteuid() != 0:  # root ignores permissions
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o500)
        result = _cli("segment", *namesakes[:1], "--model", model_path, "-o", locked,
                      "--device", "cpu")
        assert result.exit_code == 2 and "cannot write the output" in result.output
        assert never_analyse == []


def test_item15_long_file_names_get_short_temporary_names(tmp_path, model_path):
    name = "n" * 246
    target = tmp_path / f"{name}.csv"
    atomic_write_text(target, "x")
    atomic_write_text(target, "y")  # a replacement too
    assert target.read_text() == "y"
    audio = tmp_path / "in" / f"{'s' * 246}.wav"
    _write(audio, "AB", 6.0, 0)
    for fmt in ("csv", "jams"):
        result = _cli("segment", audio, "--model", model_path, "-o", tmp_path / "out",
                      "--format", fmt, "--device", "cpu")
        assert result.exit_code == 0, result.output
        assert (tmp_path / "out" / f"{'s' * 246}.{fmt}").is_file()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]
    assert all(len(os.fsencode(p.name)) <= 255 for p in (tmp_path / "out").iterdir())
