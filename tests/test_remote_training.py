"""bench/remote_training.py (features packed for a GPU machine without the corpora, then
trained on from the cache alone) and bench/training_curves.py (the runs' plot)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import load_bench
from msaf_learned_ssm import ModelConfig
from msaf_learned_ssm.examples import write_synthetic_corpus



@pytest.fixture(scope="module")
def remote():
    return load_bench("remote_training")


def test_quantisation_error_is_within_half_a_step(remote):
    steps = np.random.default_rng(0).normal(size=(80, 500)).astype(np.float32) * 3
    codes, lo, hi = remote.quantise(steps)
    assert codes.dtype == np.uint8 and codes.min() == 0 and codes.max() == 255
    back = remote.dequantise(codes, lo, hi)
    assert back.dtype == np.float32
    assert np.abs(back - steps).max() <= (hi - lo) / 510 + 1e-5
    flat = np.full((80, 10), 2.5, dtype=np.float32)  # no range: no division by zero
    np.testing.assert_array_equal(remote.dequantise(*remote.quantise(flat)), flat)


def test_unpacked_corpora_train_from_the_cache_without_decoding(remote, tmp_path, monkeypatch,
                                                                 untrained_model_path):
    from msaf_learned_ssm_training import corpus as corpus_module
    from msaf_learned_ssm_training.corpus import FeatureCache, find_tracks, find_unlabeled
    from msaf_learned_ssm_training.trainer import TrainConfig, train

    source = write_synthetic_corpus(tmp_path / "src", n_tracks=3, section_sec=8.0)
    (tmp_path / "val.txt").write_text("t2\n")
    (tmp_path / "train.txt").write_text("t0\nt1\n")
    unlabeled = tmp_path / "unl"
    (unlabeled / "audio").mkdir(parents=True)
    shutil.copy(source / "audio" / "t1.wav", unlabeled / "audio" / "u1.wav")
    cache = tmp_path / "cache"
    pack = tmp_path / "pack.npz.xz"
    remote.main(["pack", str(pack), "--labelled", f"{source}:{tmp_path / 'train.txt'}",
                 "--labelled", f"{source}:{tmp_path / 'val.txt'}=val",
                 "--unlabeled", str(unlabeled), "--cache-dir", str(cache)])
    dest = tmp_path / "there"
    remote.main(["unpack", str(pack), str(dest)])
    assert sorted(p.name for p in (dest / "src" / "audio").iterdir()) == ["t0.wav", "t1.wav"]
    assert [p.name for p in (dest / "val" / "references").iterdir()] == ["t2.jams"]
    assert (dest / "val" / "references" / "t2.jams").read_bytes() == \
        (source / "references" / "t2.jams").read_bytes()

    # Every feature comes from the unpacked cache: decoding a stand-in is an error.
    def no_decoding(*args, **kwargs):
        raise AssertionError("audio decoded: the unpacked cache was missed")

    monkeypatch.setattr(corpus_module, "load_audio", no_decoding)
    original = FeatureCache(cache, ModelConfig()).steps(source / "audio" / "t0.wav")
    unpacked = FeatureCache(dest / "cache", ModelConfig()).steps(dest / "src" / "audio" / "t0.wav")
    assert unpacked[0].shape == original[0].shape and unpacked[2] == original[2]
    np.testing.assert_array_equal(unpacked[1], original[1])
    assert np.abs(unpacked[0] - original[0]).max() <= np.ptp(original[0]) / 510 + 1e-5
    result = train(find_tracks(dest / "src"), find_tracks(dest / "val"), tmp_path / "m.pt",
                   ModelConfig(attention_layers=1),
                   TrainConfig(epochs=1, max_patches=32), cache_dir=dest / "cache",
                   device="cpu", progress=False,
                   unlabeled_tracks=find_unlabeled(dest / "unl"),
                   teachers=[untrained_model_path])
    assert result.epochs_run == 1 and (tmp_path / "m.pt").is_file()
    assert "teacher_loss" in result.history[0]  # the stand-in's teacher targets were made


def test_training_curves_plot_runs_and_refuse_other_files(tmp_path):
    curves = load_bench("training_curves")
    logs = []
    for name, teacher in (("a", False), ("b", True)):
        rows = [{"epoch": e, "loss": 1 / e, "val_HR0.5F": 0.1 * e, "val_HR3F": 0.2 * e,
                 "val_score": 0.15 * e, **({"teacher_loss": 0.01 / e} if teacher else {})}
                for e in (1, 2, 3)]
        path = tmp_path / f"{name}.log.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        logs.append(f"{path}:{name}")
    out = tmp_path / "curves.png"
    curves.main([*logs, "--out", str(out)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"x": 1}\n')
    with pytest.raises(SystemExit, match="not a training log"):
        curves.main([str(bad), "--out", str(tmp_path / "x.png")])
