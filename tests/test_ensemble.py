"""Ensembles of models: the mean SSM and the mean novelty of their members, as one model file
that every entry point (Analyzer, CLI, MSAF's ssm_model, candidates) takes like any other."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from msaf_learned_ssm import ModelConfig
from msaf_learned_ssm.checkpoint import (atomic_torch_save, checkpoint_dict, load_model,
                                         read_checkpoint, save_ensemble, save_model)
from msaf_learned_ssm.cli import main
from msaf_learned_ssm.errors import CheckpointError, ConfigError
from msaf_learned_ssm.inference import Analyzer
from msaf_learned_ssm.model import EnsembleSSMNet, SSMNet, cosine_ssm
from msaf_learned_ssm.model_files import DEFAULT_MODEL, NAMED_MODELS, file_sha256, resolve_model

from conftest import untrained_model


def _members(tmp_path, n=2, layers=(0, 1)):
    paths = []
    for i in range(n):
        model = untrained_model(attention_layers=layers[i % len(layers)], seed=i)
        path = tmp_path / f"m{i}.pt"
        save_model(model, path)
        paths.append(path)
    return paths


def test_ensemble_outputs_are_the_mean_of_its_members(tmp_path):
    paths = _members(tmp_path, 3)
    members = [load_model(p)[0] for p in paths]
    ensemble = EnsembleSSMNet(members).eval()
    patches = torch.randn(60, 80, 40)
    with torch.no_grad():
        outputs = [m(patches) for m in members]
        embeddings, novelty = ensemble(patches)
        batched = ensemble.encoder.forward_tracks([patches[:25], patches])
    assert embeddings.shape == (60, 3 * 128)
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(60))
    mean_ssm = torch.stack([cosine_ssm(e) for e, _ in outputs]).mean(0)
    torch.testing.assert_close(cosine_ssm(embeddings), mean_ssm, atol=1e-5, rtol=0)
    torch.testing.assert_close(novelty, torch.stack([n for _, n in outputs]).mean(0),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(batched[1], embeddings, atol=1e-5, rtol=0)
    assert ensemble.novelty.size == members[0].novelty.size


def test_an_ensemble_of_one_model_twice_segments_like_the_model(tmp_path, planted_track):
    path = _members(tmp_path, 1)[0]
    out = tmp_path / "twice.pt"
    save_ensemble([path, path], out)
    audio, _ = planted_track
    alone = Analyzer(path, "cpu").analyze(audio)
    twice = Analyzer(out, "cpu").analyze(audio)
    np.testing.assert_allclose(twice.novelty, alone.novelty, atol=1e-5)
    np.testing.assert_array_equal(twice.boundaries, alone.boundaries)
    np.testing.assert_array_equal(twice.labels(), alone.labels())


def test_ensemble_file_records_its_members_and_takes_the_first_ones_settings(tmp_path):
    paths = _members(tmp_path, 2)
    data = read_checkpoint(paths[0])
    data["peaks"] = {"mean_half_sec": 8.0, "min_distance_sec": 5.0, "threshold": 1.2}
    atomic_torch_save(data, paths[0])
    out = tmp_path / "ens.pt"
    content = save_ensemble(paths, out, name="two")
    assert content["members"] == [f"m0.pt sha256:{file_sha256(paths[0])}",
                                  f"m1.pt sha256:{file_sha256(paths[1])}"]
    analyzer = Analyzer(out, "cpu")
    assert isinstance(analyzer.model, EnsembleSSMNet)
    assert analyzer.peaks.mean_half_sec == 8.0 and analyzer.peaks.threshold == 1.2
    assert analyzer.identity == {"name": "ens.pt", "sha256": file_sha256(out)}
    _, meta = load_model(out)
    assert meta["name"] == "two" and meta["members"] == content["members"]


def test_bad_ensembles_are_refused_naming_the_file(tmp_path):
    paths = _members(tmp_path, 2)
    out = tmp_path / "ens.pt"
    save_ensemble(paths, out)
    with pytest.raises(CheckpointError, match="ensemble; give its members"):
        save_ensemble([out, paths[0]], tmp_path / "nested.pt")
    with pytest.raises(CheckpointError, match="at least two"):
        save_ensemble(paths[:1], tmp_path / "one.pt")
    other = SSMNet(ModelConfig(n_mels=64))
    save_model(other, tmp_path / "mels64.pt")
    with pytest.raises(CheckpointError, match="front-end or patch grid differs"):
        save_ensemble([paths[0], tmp_path / "mels64.pt"], tmp_path / "mixed.pt")
    assert not (tmp_path / "mixed.pt").exists()
    # A damaged member is named in the error.
    data = read_checkpoint(out)
    data["ensemble"][1]["state_dict"].popitem()
    atomic_torch_save(data, tmp_path / "damaged.pt")
    with pytest.raises(CheckpointError, match=r"damaged.pt \(member 2\)"):
        load_model(tmp_path / "damaged.pt")
    data["ensemble"] = data["ensemble"][:1]
    atomic_torch_save(data, tmp_path / "short.pt")
    with pytest.raises(CheckpointError, match="2 to 8 member"):
        load_model(tmp_path / "short.pt")


def test_training_does_not_start_from_an_ensemble(tmp_path):
    from msaf_learned_ssm_training.trainer import TrainConfig, _initial_weights

    out = tmp_path / "ens.pt"
    save_ensemble(_members(tmp_path, 2), out)
    with pytest.raises(ConfigError, match="--init takes one model"):
        _initial_weights(out, TrainConfig())


def test_ensemble_command(tmp_path, planted_track):
    paths = _members(tmp_path, 2)
    out = tmp_path / "cli.pt"
    runner = CliRunner()
    result = runner.invoke(main, ["ensemble", str(out), str(paths[0]), str(paths[1]),
                                  "--name", "cli-ensemble"])
    assert result.exit_code == 0, result.output
    assert "ensemble of m0.pt sha256:" in result.output
    assert load_model(out)[1]["name"] == "cli-ensemble"
    again = runner.invoke(main, ["ensemble", str(out), str(paths[0]), str(paths[1])])
    assert again.exit_code == 2 and "exists: pass --overwrite" in again.output
    missing = runner.invoke(main, ["ensemble", str(tmp_path / "x.pt"), str(paths[0]),
                                   str(tmp_path / "nope.pt")])
    assert missing.exit_code == 2 and "nope.pt: no such model file" in missing.output
    audio, _ = planted_track
    seg = runner.invoke(main, ["segment", str(audio), "--model", str(out), "--no-labels"])
    assert seg.exit_code == 0, seg.output


def test_shipped_author_ensemble_is_the_two_author_checkpoints():
    path = resolve_model("author-ensemble")
    assert NAMED_MODELS["author-ensemble"] == "author-ensemble.pt" and path.is_file()
    model, meta = load_model(path)
    assert isinstance(model, EnsembleSSMNet) and DEFAULT_MODEL != "author-ensemble"
    assert meta["members"] == [
        f"{name} sha256:{file_sha256(resolve_model(name))}"
        for name in ("author-nbatt1", "author-nbatt3")]
    assert "LGPL-3.0" in meta["license"]
    for member, name in zip(read_checkpoint(path)["ensemble"], ("author-nbatt1",
                                                                 "author-nbatt3")):
        ref = load_model(resolve_model(name))[0]
        for key, value in checkpoint_dict(ref)["state_dict"].items():
            assert torch.equal(member["state_dict"][key], value)
