"""Reliability of training (issue 13, items 1, 2, 7, 9, 10, 11, 12): no silent loss of a
run's files, no silent NaN, and every misuse a one-line error before any work."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from msaf_learned_ssm import ModelConfig
from msaf_learned_ssm.checkpoint import read_checkpoint
from msaf_learned_ssm.cli import main
from msaf_learned_ssm.errors import LearnedSSMError, OutputError
from msaf_learned_ssm.examples import write_synthetic_corpus
from msaf_learned_ssm_training.corpus import default_cache_dir, find_tracks
from msaf_learned_ssm_training.trainer import (TrainConfig, TrainingDivergedError, run_paths,
                                               train)

TINY = ModelConfig(attention_layers=1)
QUICK = dict(device="cpu", progress=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_synthetic_corpus(tmp_path_factory.mktemp("rcorpus"), 4, seed=7)


def _cli(*args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CliRunner().invoke(main, [*map(str, args)])


def _train_cli(corpus, out, *extra):
    return _cli("train", corpus, "--out", out, "--val-split", "0.25", "--device", "cpu",
                "--cache-dir", out.parent / "cache", *extra)


def test_item1_a_second_run_does_not_replace_the_first(corpus, tmp_path):
    out = tmp_path / "m" / "model.pt"
    assert _train_cli(corpus, out, "--epochs", "2").exit_code == 0
    before = {p: p.read_bytes() for p in run_paths(out)}
    result = _train_cli(corpus, out, "--epochs", "1")
    assert result.exit_code == 2
    assert "exists" in result.output and "--resume" in result.output
    assert all(p.read_bytes() == b for p, b in before.items())  # untouched
    assert _train_cli(corpus, out, "--epochs", "1", "--overwrite").exit_code == 0
    assert len((tmp_path / "m" / "model.log.jsonl").read_text().splitlines()) == 1


def test_item2_names_without_pt_get_their_own_state_and_log(tmp_path):
    a, b = run_paths(tmp_path / "model.v1"), run_paths(tmp_path / "model.v2")
    assert a[1].name == "model.v1.state.pt" and b[1].name == "model.v2.state.pt"
    assert a[2].name == "model.v1.log.jsonl" and len(set(a) | set(b)) == 6
    assert run_paths(tmp_path / "model.pt")[1].name == "model.state.pt"  # unchanged


def test_item7_divergence_stops_with_an_error_and_saves_nothing_non_finite(corpus, tmp_path):
    tracks = find_tracks(corpus)
    out = tmp_path / "nan.pt"
    with pytest.raises(TrainingDivergedError, match="lower the learning rate"):
        train(tracks[:3], tracks[3:], out, TINY, TrainConfig(epochs=2, lr=1e8, seed=0),
              cache_dir=tmp_path / "c", **QUICK)
    for path in run_paths(out):
        if path.suffix == ".pt" and path.exists():
            data = read_checkpoint(path)
            weights = data["model"]["state_dict"] if "model" in data else data["state_dict"]
            assert all(torch.isfinite(w).all() for w in weights.values())
    result = _train_cli(corpus, tmp_path / "cli" / "nan.pt", "--epochs", "2", "--lr", "1e8")
    assert result.exit_code == 2 and "error:" in result.output and "Traceback" not in result.output
    # The epoch's progress bar is cleared first: the error starts a line of its own.
    assert result.output.splitlines()[-1].startswith("error: the loss became")


def test_item9_unwritable_out_fails_before_any_work(corpus, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = _train_cli(corpus, locked / "model.pt", "--epochs", "1")
        assert result.exit_code == 2 and "cannot write the model" in result.output
        assert not (tmp_path / "cache").exists()  # failed before computing a feature
    finally:
        locked.chmod(0o700)


def test_item9_unwritable_out_is_checked_with_a_file_in_the_way(corpus, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="cannot write the model"):
        train(find_tracks(corpus)[:3], [], blocker / "model.pt", TINY, TrainConfig(epochs=1),
              **QUICK)


def test_item9_read_only_corpus_caches_in_the_user_cache(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = default_cache_dir(corpus)
    assert str(folder).startswith(str(tmp_path / "xdg")) and "msaf-learned-ssm" in str(folder)


@pytest.mark.parametrize("value", ["1.5", "-1", "nan", "0", "1"])
def test_item10_bad_val_split_is_a_usage_error(corpus, tmp_path, value):
    result = _cli("train", corpus, "--out", tmp_path / "m.pt", "--val-split", value)
    assert result.exit_code == 2 and "--val-split" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "m.pt").exists()


def test_item10_tiny_and_empty_corpora_say_why(tmp_path):
    one = write_synthetic_corpus(tmp_path / "one", 1)
    result = _cli("train", one, "--out", tmp_path / "a.pt", "--device", "cpu")
    assert result.exit_code == 2 and "too few" in result.output and "--val" in result.output
    empty = tmp_path / "empty"
    (empty / "audio").mkdir(parents=True)
    (empty / "references").mkdir()
    result = _cli("train", empty, "--out", tmp_path / "b.pt", "--device", "cpu")
    assert result.exit_code == 2 and "no track has both audio" in result.output
    assert not (empty / ".ssm_cache").exists()


def test_item11_resume_with_more_epochs_continues(corpus, tmp_path):
    out = tmp_path / "r" / "model.pt"
    assert _train_cli(corpus, out, "--epochs", "1", "--patience", "5").exit_code == 0
    result = _train_cli(corpus, out, "--epochs", "3", "--resume")
    assert result.exit_code == 0, result.output
    assert "after 3 epochs" in result.output
    assert len(run_paths(out)[2].read_text().splitlines()) == 3


def test_item12_reference_longer_than_audio_is_rejected(tmp_path):
    corpus = write_synthetic_corpus(tmp_path / "c", 3)
    ref = corpus / "references" / "t0.jams"
    data = json.loads(ref.read_text())
    data["file_metadata"]["duration"] = 120.0
    for ann in data["annotations"]:  # the reference of a 120 s song
        ann["data"][-1]["duration"] = 120.0 - ann["data"][-1]["time"]
    ref.write_text(json.dumps(data))
    tracks = find_tracks(corpus)
    result = train(tracks, [], tmp_path / "m.pt", TINY, TrainConfig(epochs=1),
                   cache_dir=tmp_path / "cache", **QUICK)
    assert "t0" in result.skipped and "lasts" in result.skipped["t0"]
    assert "t1" not in result.skipped


def test_no_training_tracks_is_a_clear_error(tmp_path):
    with pytest.raises(LearnedSSMError, match="no training tracks"):
        train([], [], tmp_path / "m.pt", TINY, TrainConfig(epochs=1), **QUICK)


def test_train_warnings_are_one_line(tmp_path):
    corpus = write_synthetic_corpus(tmp_path / "c", 3)
    (corpus / "audio" / "orphan.wav").write_bytes((corpus / "audio" / "t0.wav").read_bytes())
    out = tmp_path / "w" / "m.pt"
    result = CliRunner().invoke(main, ["train", str(corpus), "--out", str(out), "--val-split",
                                       "0.25", "--device", "cpu", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "no reference JAMS" in line]
    assert lines and all(line.startswith("warning: ") for line in lines)
    assert "warnings.warn" not in result.output and "UserWarning" not in result.output
    np.testing.assert_equal(len(lines), 1)
