"""Teacher loss on unlabelled tracks: the soft-target divergence, the teachers' targets and
their cache, the epoch's mix of labelled and unlabelled tracks, exact resumption, the
record of the teachers, and the train command's options."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from msaf_learned_ssm import ModelConfig
from msaf_learned_ssm.checkpoint import load_model, read_checkpoint, save_model
from msaf_learned_ssm.cli import main
from msaf_learned_ssm.errors import CheckpointError, ConfigError
from msaf_learned_ssm.examples import write_synthetic_corpus
from msaf_learned_ssm.model import SSMNet
from msaf_learned_ssm_training.augment import AugmentConfig
from msaf_learned_ssm_training.corpus import FeatureCache, find_tracks, find_unlabeled
from msaf_learned_ssm_training.losses import novelty_bce, soft_bce, weighted_bce
from msaf_learned_ssm_training.teachers import (TeacherCache, TeacherTargets, align_targets,
                                                load_teachers, teacher_outputs)
from msaf_learned_ssm_training.trainer import (TrainConfig, epoch_order, teacher_step, train,
                                               unlabeled_steps)

TINY = ModelConfig(attention_layers=1)


def test_soft_bce_is_zero_at_the_target_and_positive_elsewhere():
    torch.manual_seed(0)
    target = torch.rand(30, 30)
    for balanced in (True, False):
        assert soft_bce(target.clone(), target, balanced).item() == 0.0
        other = (target + 0.2 * torch.randn(30, 30)).clamp(0, 1)
        assert soft_bce(other, target, balanced).item() > 0
    # Hard targets: the SSM-loss and the novelty loss themselves (up to the clamp constant).
    hard = (torch.rand(40) > 0.7).float()
    pred = torch.rand(40)
    assert soft_bce(pred, hard, True).item() == pytest.approx(weighted_bce(pred, hard).item(),
                                                              abs=1e-5)
    assert soft_bce(pred, hard, False).item() == pytest.approx(novelty_bce(pred, hard).item(),
                                                               abs=1e-5)


def test_soft_bce_pulls_toward_the_target():
    target = torch.tensor([0.2, 0.7, 0.9, 0.4])
    pred = torch.full((4,), 0.5, requires_grad=True)
    optimizer = torch.optim.SGD([pred], lr=0.5)
    for _ in range(300):
        optimizer.zero_grad()
        soft_bce(pred, target, True).backward()
        optimizer.step()
        with torch.no_grad():
            pred.clamp_(1e-4, 1 - 1e-4)
    np.testing.assert_allclose(pred.detach().numpy(), target.numpy(), atol=0.02)


def _model(seed: int) -> SSMNet:
    torch.manual_seed(seed)
    return SSMNet(TINY).eval()


@pytest.fixture(scope="module")
def teacher_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("teachers")
    paths = []
    for seed in (1, 2):
        paths.append(folder / f"teacher{seed}.pt")
        save_model(_model(seed), paths[-1])
    return paths


def test_student_equal_to_its_teacher_has_zero_loss(tmp_path, teacher_files):
    teachers = load_teachers([teacher_files[0]])
    patches = np.random.default_rng(0).standard_normal((60, 80, 40)).astype(np.float32)
    ssm, novelty = teacher_outputs(teachers, patches)
    student, _ = load_model(teacher_files[0])
    losses = teacher_step(student.eval(), torch.from_numpy(patches), torch.from_numpy(ssm),
                          torch.from_numpy(novelty), TrainConfig(teacher_weight=2.0))
    assert abs(losses["loss"].item()) < 1e-6
    other = teacher_step(_model(7), torch.from_numpy(patches), torch.from_numpy(ssm),
                         torch.from_numpy(novelty), TrainConfig())
    assert other["loss"].item() > 1e-3


def test_teacher_outputs_are_the_mean_of_the_teachers(teacher_files):
    teachers = load_teachers(teacher_files)
    assert [t.record.split(" ")[0] for t in teachers] == ["teacher1.pt", "teacher2.pt"]
    patches = np.random.default_rng(1).standard_normal((30, 80, 40)).astype(np.float32)
    ssm, novelty = teacher_outputs(teachers, patches)
    each = [teacher_outputs([t], patches) for t in teachers]
    np.testing.assert_allclose(ssm, (each[0][0] + each[1][0]) / 2, atol=1e-6)
    np.testing.assert_allclose(novelty, (each[0][1] + each[1][1]) / 2, atol=1e-6)
    assert ssm.shape == (30, 30) and novelty.shape == (30,)
    with pytest.raises(ConfigError, match="twice"):
        load_teachers([teacher_files[0], teacher_files[0]])
    with pytest.raises(ConfigError, match="no teacher"):
        load_teachers([])


def test_align_targets_takes_the_nearest_clean_patch():
    times = np.arange(5) * 1.0
    targets = TeacherTargets(np.arange(25, dtype=np.float32).reshape(5, 5),
                             np.arange(5, dtype=np.float32), times)
    ssm, novelty = align_targets(targets, times)
    np.testing.assert_array_equal(ssm, targets.ssm)
    # A draw played 1.25 x faster: its patch at 2.0 s is the clean audio's 2.5 s -> 2 or 3.
    ssm, novelty = align_targets(targets, np.array([0.0, 0.8, 2.0, 3.2]), time_scale=1.25)
    np.testing.assert_array_equal(novelty, [0, 1, 2, 4])
    assert ssm[1, 3] == targets.ssm[1, 4]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    labelled = write_synthetic_corpus(tmp_path_factory.mktemp("labelled"), 4, section_sec=8.0)
    unlabeled = write_synthetic_corpus(tmp_path_factory.mktemp("unlabeled"), 3, section_sec=8.0,
                                       seed=10)
    shutil.rmtree(unlabeled / "references")
    return labelled, unlabeled


def test_teacher_cache_stores_and_rebuilds(corpora, teacher_files, tmp_path):
    cache = TeacherCache(tmp_path, load_teachers(teacher_files))
    audio = find_unlabeled(corpora[1])[0].audio
    first = cache.targets(audio)
    assert cache.path_for(audio).is_file()
    again = cache.targets(audio)
    np.testing.assert_allclose(again.ssm, first.ssm, atol=1e-3)
    np.testing.assert_array_equal(again.novelty, first.novelty)
    cache.path_for(audio).write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="corrupt teacher cache"):
        rebuilt = cache.targets(audio)
    np.testing.assert_allclose(rebuilt.ssm, first.ssm, atol=1e-3)
    # Another teacher set never reads these entries.
    assert TeacherCache(tmp_path, load_teachers(teacher_files[:1])).path_for(audio) \
        != cache.path_for(audio)


def test_epoch_order_mixes_unlabelled_tracks():
    config = TrainConfig(seed=4, unlabeled_share=0.5)
    legacy = np.random.default_rng([4, 2]).permutation(10)
    np.testing.assert_array_equal(epoch_order(config, 2, 10, 0), legacy)
    order = epoch_order(config, 2, 10, 25)
    assert len(order) == 20 and sorted(order[order < 10]) == list(range(10))
    assert len(set(order[order >= 10])) == 10  # no repetition while the pool lasts
    small = epoch_order(config, 2, 10, 4)
    assert np.bincount(small[small >= 10] - 10).tolist() == [3, 3, 2, 2] or \
        sorted(np.bincount(small[small >= 10] - 10)) == [2, 2, 3, 3]
    np.testing.assert_array_equal(order, epoch_order(config, 2, 10, 25))
    assert unlabeled_steps(30, 0.25) == 10 and unlabeled_steps(30, 0.0) == 0
    with pytest.raises(ConfigError):
        TrainConfig(unlabeled_share=1.0)
    with pytest.raises(ConfigError):
        TrainConfig(teacher_weight=float("nan"))


def test_training_with_teachers_resumes_identically_and_records_them(corpora, teacher_files,
                                                                     tmp_path):
    tracks, unlabeled = find_tracks(corpora[0]), find_unlabeled(corpora[1])
    cfg = TrainConfig(epochs=2, lr=1e-3, patience=10, seed=3, checkpoint_every=1,
                      augment=AugmentConfig(variants=1, p_mp3=0.0, p_tempo=1.0).to_dict(),
                      unlabeled_share=0.4)
    kwargs = dict(cache_dir=tmp_path / "cache", device="cpu", progress=False,
                  unlabeled_tracks=unlabeled, teachers=teacher_files, data_threads=0)
    full = train(tracks[:3], tracks[3:], tmp_path / "full.pt", TINY, cfg, **kwargs)
    assert all("teacher_loss" in h and h["teacher_loss"] > 0 for h in full.history)
    partial = train(tracks[:3], tracks[3:], tmp_path / "cut.pt", TINY, cfg,
                    stop_after_steps=6, **kwargs)
    assert partial.stopped == "steps"
    with pytest.raises(CheckpointError, match="teachers"):
        train(tracks[:3], tracks[3:], tmp_path / "cut.pt", TINY, cfg, resume=True,
              **{**kwargs, "teachers": teacher_files[:1]})
    train(tracks[:3], tracks[3:], tmp_path / "cut.pt", TINY, cfg, resume=True, **kwargs)
    a = read_checkpoint(tmp_path / "full.state.pt")
    b = read_checkpoint(tmp_path / "cut.state.pt")
    for key, value in a["model"]["state_dict"].items():
        assert torch.equal(value, b["model"]["state_dict"][key]), key
    records = read_checkpoint(tmp_path / "full.pt")["train_config"]["teachers"]
    assert [r.split(" sha256:")[0] for r in records] == ["teacher1.pt", "teacher2.pt"]
    assert all(len(r.split("sha256:")[1]) == 16 for r in records)
    with pytest.raises(ConfigError, match="together"):
        train(tracks[:3], tracks[3:], tmp_path / "x.pt", TINY, cfg, cache_dir=tmp_path,
              device="cpu", progress=False, unlabeled_tracks=unlabeled)


def test_train_command_with_teachers(corpora, teacher_files, tmp_path):
    labelled, unlabeled = corpora
    (tmp_path / "ids.txt").write_text("t0\nt2\n")
    out = tmp_path / "cli.pt"
    args = ["train", str(labelled), "--out", str(out), "--epochs", "1", "--val-split", "0.25",
            "--device", "cpu", "--cache-dir", str(tmp_path / "c"), "--attention-layers", "1"]
    result = CliRunner().invoke(main, args + [
        "--teacher", f"{teacher_files[0]},{teacher_files[1]}", "--unlabeled", str(unlabeled),
        "--unlabeled-ids", str(tmp_path / "ids.txt"), "--teacher-weight", "0.5",
        "--unlabeled-share", "0.3"])
    assert result.exit_code == 0, result.output
    assert "and 2 unlabelled ones" in result.output
    saved = read_checkpoint(out)["train_config"]
    assert saved["teacher_weight"] == 0.5 and saved["unlabeled_share"] == 0.3
    assert len(saved["teachers"]) == 2
    lonely = CliRunner().invoke(main, args + ["--teacher", "author-nbatt1"])
    assert lonely.exit_code == 2 and "--teacher and --unlabeled go together" in lonely.output
    (tmp_path / "bad.txt").write_text("nope\n")
    missing = CliRunner().invoke(main, args + ["--overwrite", "--teacher", "author-nbatt1",
                                               "--unlabeled", str(unlabeled), "--unlabeled-ids",
                                               str(tmp_path / "bad.txt")])
    assert missing.exit_code == 2 and "nope" in missing.output


def test_author_checkpoints_serve_as_teachers():
    teachers = load_teachers(["author-nbatt1", "author-nbatt3"])
    assert [t.name for t in teachers] == ["author-nbatt1", "author-nbatt3"]
    feature_config = teachers[0].model.config
    assert FeatureCache(None, feature_config).config == feature_config
