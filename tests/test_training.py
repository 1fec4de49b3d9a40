"""Training: targets, losses, the loss going down on a synthetic corpus, exact resumption,
the feature cache, and the train command."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from msaf_learned_ssm import ConfigError, ModelConfig
from msaf_learned_ssm.checkpoint import load_model, read_checkpoint
from msaf_learned_ssm.cli import main
from msaf_learned_ssm.examples import write_synthetic_corpus
from msaf_learned_ssm_training.corpus import FeatureCache, find_tracks, split_tracks
from msaf_learned_ssm_training.losses import joint_loss, novelty_bce, weighted_bce
from msaf_learned_ssm_training.targets import ground_truth_novelty, ground_truth_ssm, patch_labels
from msaf_learned_ssm_training.trainer import TrainConfig, train


def test_patch_labels_and_targets():
    times = np.array([0.5, 1.5, 2.5, 3.5, 4.5, 5.5])
    labels = patch_labels(times, np.array([[0, 2], [2, 4], [4, 5]]), ["A", "B", "A"])
    np.testing.assert_array_equal(labels, [0, 0, 1, 1, 0, -1])
    ssm = ground_truth_ssm(labels)
    assert ssm[0, 4] == 1 and ssm[0, 2] == 0 and ssm[5, 5] == 0
    nov = ground_truth_novelty(np.array([0] * 6 + [1] * 6))
    np.testing.assert_allclose(nov[4:9], [0.25, 0.5, 1, 0.5, 0.25])


def test_weighted_bce_balances_classes():
    target = torch.tensor([1.0, 0, 0, 0])
    # A wrong positive costs as much as three wrong negatives (weights 3/4 vs 1/4).
    miss_pos = weighted_bce(torch.tensor([0.1, 0, 0, 0]), target)
    miss_neg = weighted_bce(torch.tensor([1.0, 0.9, 0.9, 0.9]), target)
    assert miss_pos.item() == pytest.approx(-(0.75 * np.log(0.1)) / 4, rel=1e-4)
    assert miss_neg.item() == pytest.approx(-(3 * 0.25 * np.log(0.1)) / 4, rel=1e-4)
    assert joint_loss(torch.tensor(1.0), torch.tensor(3.0), 0.25).item() == pytest.approx(2.5)
    with pytest.raises(ValueError):
        joint_loss(torch.tensor(1.0), torch.tensor(1.0), 1.5)
    p = torch.tensor([0.2, 0.8])
    t = torch.tensor([0.0, 1.0])
    assert novelty_bce(p, t).item() == pytest.approx(-np.log(0.8), rel=1e-5)


def _write_corpus(root, n_tracks=4, seed=0):
    return write_synthetic_corpus(root, n_tracks, seed=seed)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _write_corpus(tmp_path_factory.mktemp("corpus"))


TINY = ModelConfig(attention_layers=1)


def test_loss_goes_down(corpus, tmp_path):
    tracks = find_tracks(corpus)
    cfg = TrainConfig(epochs=4, lr=1e-3, patience=10, seed=1)
    result = train(tracks[:3], tracks[3:], tmp_path / "m.pt", TINY, cfg,
                   cache_dir=tmp_path / "cache", device="cpu", progress=False)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 4
    assert losses[-1] < losses[0]
    model, meta = load_model(tmp_path / "m.pt")
    assert model.config == TINY and "metrics" in meta
    log = (tmp_path / "m.log.jsonl").read_text().splitlines()
    assert len(log) == 4 and "val_HR3F" in log[0]


def test_resume_gives_identical_state(corpus, tmp_path):
    tracks = find_tracks(corpus)
    cfg = TrainConfig(epochs=2, lr=1e-3, patience=10, seed=3, checkpoint_every=1)
    kwargs = dict(cache_dir=tmp_path / "cache", device="cpu", progress=False)
    train(tracks[:3], tracks[3:], tmp_path / "full.pt", TINY, cfg, **kwargs)
    # Interrupted after 4 steps (mid-epoch 2), then resumed.
    partial = train(tracks[:3], tracks[3:], tmp_path / "cut.pt", TINY, cfg,
                    stop_after_steps=4, **kwargs)
    assert partial.stopped == "steps"
    train(tracks[:3], tracks[3:], tmp_path / "cut.pt", TINY, cfg, resume=True, **kwargs)
    a = read_checkpoint(tmp_path / "full.state.pt")
    b = read_checkpoint(tmp_path / "cut.state.pt")
    for key, value in a["model"]["state_dict"].items():
        assert torch.equal(value, b["model"]["state_dict"][key]), key
    assert a["history"][-1]["loss"] == pytest.approx(b["history"][-1]["loss"], abs=1e-9)


def test_feature_cache_rebuilds_corrupt_entry(corpus, tmp_path):
    cache = FeatureCache(tmp_path, TINY)
    audio = find_tracks(corpus)[0].audio
    first = cache.steps(audio)[0]
    entry = cache.path_for(audio)
    assert entry.is_file()
    entry.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="corrupt"):
        again = cache.steps(audio)[0]
    np.testing.assert_array_equal(first, again)


def test_split_is_seeded_and_disjoint(corpus):
    tracks = find_tracks(corpus)
    a, b = split_tracks(tracks, 0.25, seed=5)
    assert len(b) == 1 and not set(a) & set(b)
    assert split_tracks(tracks, 0.25, seed=5) == (a, b)


@pytest.mark.parametrize("flags", [["--attention-layers", "0", "--alpha", "1"],
                                   ["--attention-layers", "1", "--alpha", "0",
                                    "--freeze-kernels"]])
def test_train_command_ablations(corpus, tmp_path, flags):
    out = tmp_path / "cli.pt"
    result = CliRunner().invoke(main, ["train", str(corpus), "--out", str(out), "--epochs", "1",
                                       "--val-split", "0.25", "--device", "cpu",
                                       "--cache-dir", str(tmp_path / "c"), *flags])
    assert result.exit_code == 0, result.output
    model, _ = load_model(out)
    assert model.config.attention_layers == int(flags[1])
    assert model.config.freeze_kernels == ("--freeze-kernels" in flags)


def test_init_starts_from_a_model_and_records_it(corpus, tmp_path):
    tracks = find_tracks(corpus)
    kwargs = dict(cache_dir=tmp_path / "cache", device="cpu", progress=False)
    train(tracks[:3], tracks[3:], tmp_path / "a.pt", TINY,
          TrainConfig(epochs=1, lr=1e-3, seed=1), **kwargs)
    start, _ = load_model(tmp_path / "a.pt")
    # One step with a learning rate too small to move the weights visibly: they are a.pt's,
    # not a random initialisation, and the architecture is a.pt's, not the one passed.
    train(tracks[:3], tracks[3:], tmp_path / "b.pt", ModelConfig(attention_layers=2),
          TrainConfig(epochs=1, lr=1e-12, seed=9), init=tmp_path / "a.pt",
          stop_after_steps=1, **kwargs)
    state = read_checkpoint(tmp_path / "b.state.pt")
    assert state["train_config"]["init"].startswith("a.pt sha256:")
    weights = state["model"]["state_dict"]
    assert all(torch.allclose(v, weights[k], atol=1e-6) for k, v in start.state_dict().items())
    with pytest.raises(ConfigError, match="resume"):
        train(tracks[:3], tracks[3:], tmp_path / "b.pt", TINY, TrainConfig(epochs=1),
              init=tmp_path / "a.pt", resume=True, **kwargs)
    result = CliRunner().invoke(main, ["train", str(corpus), "--out", str(tmp_path / "c.pt"),
                                       "--init", str(tmp_path / "a.pt"),
                                       "--attention-layers", "2"])
    assert result.exit_code == 2 and "architecture is the initial model's" in result.output
