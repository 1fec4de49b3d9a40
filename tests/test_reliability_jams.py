"""Reliability of references in training: a corpus with one broken reference trains on the
other tracks and reports the skipped one with its reason.

Bad JAMS files themselves (not JSON, JSON but not JAMS, no segment annotation, unsorted,
overlapping, negative, beyond the audio, empty labels) are covered in
``test_jams_adapters.py``."""

from __future__ import annotations

import warnings

import pytest
from click.testing import CliRunner

from msaf_learned_ssm import LearnedSSMError, ModelConfig
from msaf_learned_ssm.checkpoint import load_model
from msaf_learned_ssm.cli import main
from msaf_learned_ssm_training.corpus import find_tracks
from msaf_learned_ssm_training.trainer import TrainConfig, train

from test_training import _write_corpus

BROKEN = {
    "not_json": "this is { not json",
    "no_segments": '{"file_metadata": {"duration": 48.0}, "annotations": [], "sandbox": {}}',
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = _write_corpus(tmp_path_factory.mktemp("corpus"), n_tracks=3)
    (root / "references" / "t1.jams").write_text(BROKEN["not_json"])
    return root


def test_trainer_skips_broken_reference(corpus, tmp_path):
    tracks = find_tracks(corpus)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train(tracks[:2], tracks[2:], tmp_path / "m.pt",
                       ModelConfig(attention_layers=1), TrainConfig(epochs=1, seed=0),
                       cache_dir=tmp_path / "cache", device="cpu", progress=False)
    assert list(result.skipped) == ["t1"]
    reason = result.skipped["t1"]
    assert "t1.jams" in reason and "JSON" in reason
    assert result.epochs_run == 1 and (tmp_path / "m.pt").is_file()


def test_trainer_no_usable_track_is_one_error(corpus, tmp_path):
    tracks = [t for t in find_tracks(corpus) if t.track_id == "t1"]
    with pytest.raises(LearnedSSMError, match="no usable training track: t1: .*t1.jams"):
        train(tracks, [], tmp_path / "m.pt", ModelConfig(attention_layers=1),
              TrainConfig(epochs=1), device="cpu", progress=False)


def test_train_command_reports_skipped_track(corpus, tmp_path):
    out = tmp_path / "cli.pt"
    ids = tmp_path / "val.txt"
    ids.write_text("t2\n")
    train_ids = tmp_path / "train.txt"
    train_ids.write_text("t0\nt1\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = CliRunner().invoke(main, [
            "train", str(corpus), "--out", str(out), "--epochs", "1", "--attention-layers", "1",
            "--train-ids", str(train_ids), "--val-ids", str(ids), "--device", "cpu",
            "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    skipped = [line for line in result.output.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 1 and skipped[0].startswith("skipped t1: ") and "t1.jams" in skipped[0]
    assert load_model(out)[0].config.attention_layers == 1
