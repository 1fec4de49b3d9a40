"""Waveform augmentation: seeded draws, each effect doing what it says, the reference scaled
with the tempo, and training with augmentation resuming to identical weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("pedalboard", reason="pedalboard (the [train] extra) applies the effects")

from msaf_learned_ssm import ConfigError, ModelConfig  # noqa: E402
from msaf_learned_ssm.checkpoint import read_checkpoint  # noqa: E402
from msaf_learned_ssm.examples import write_synthetic_corpus  # noqa: E402
from msaf_learned_ssm_training.augment import (AugmentConfig, apply_augmentation,  # noqa: E402
                                               draw_augmentation)
from msaf_learned_ssm_training.corpus import FeatureCache, find_tracks  # noqa: E402
from msaf_learned_ssm_training.trainer import (TrainConfig, _ahead, load_example,  # noqa: E402
                                                train)

SR = 22050
NONE = dict(p_eq=0.0, p_lowpass=0.0, p_noise=0.0, p_pitch=0.0, p_tempo=0.0, p_mp3=0.0)


def _tone(seconds=4.0, f0=440.0):
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)


def test_draws_are_seeded_json_exact_and_in_range():
    cfg = AugmentConfig()
    draws = [draw_augmentation(cfg, 0, f"t{i}", v) for i in range(200) for v in range(2)]
    assert draws[0] == draw_augmentation(cfg, 0, "t0", 0)
    assert draws[0] != draw_augmentation(cfg, 1, "t0", 0)
    assert all(json.loads(json.dumps(d)) == d for d in draws)
    tempos = [d["tempo"] for d in draws if d["tempo"] is not None]
    pitches = [d["pitch_semitones"] for d in draws if d["pitch_semitones"] is not None]
    snrs = [d["snr_db"] for d in draws if d["snr_db"] is not None]
    assert 0.92 <= min(tempos) and max(tempos) <= 1.08
    assert -2 <= min(pitches) and max(pitches) <= 2
    assert 20 <= min(snrs) and max(snrs) <= 45
    assert 0.35 < len(tempos) / len(draws) < 0.65  # p_tempo = 0.5


def test_gain_only_is_exact_and_tempo_scales_time():
    y = _tone()
    params = draw_augmentation(AugmentConfig(**NONE), 0, "x", 0)
    out, scale = apply_augmentation(y, SR, params)
    np.testing.assert_allclose(out, y * 10 ** (params["gain_db"] / 20), rtol=1e-5, atol=1e-7)
    assert scale == 1.0
    params = dict(params, tempo=1.08)
    out, scale = apply_augmentation(y, SR, params)
    assert scale == pytest.approx(1 / 1.08)
    assert len(out) / len(y) == pytest.approx(1 / 1.08, abs=0.01)


def test_pitch_shift_moves_the_partial():
    y = _tone(f0=440.0)
    params = dict(draw_augmentation(AugmentConfig(**NONE), 0, "x", 0), gain_db=0.0,
                  pitch_semitones=2.0)
    out, scale = apply_augmentation(y, SR, params)
    assert scale == 1.0
    spec = np.abs(np.fft.rfft(out[SR:3 * SR]))
    peak = np.fft.rfftfreq(2 * SR, 1 / SR)[np.argmax(spec)]
    assert peak == pytest.approx(440 * 2 ** (2 / 12), rel=0.01)


def test_noise_snr_and_determinism():
    y = _tone()
    params = dict(draw_augmentation(AugmentConfig(**NONE), 0, "x", 0), gain_db=0.0, snr_db=20.0)
    out, _ = apply_augmentation(y, SR, params)
    noise = out - y
    snr = 10 * np.log10(np.mean(y.astype(float) ** 2) / np.mean(noise.astype(float) ** 2))
    assert snr == pytest.approx(20.0, abs=0.5)
    again, _ = apply_augmentation(y, SR, params)
    np.testing.assert_array_equal(out, again)
    full = draw_augmentation(AugmentConfig(p_eq=1, p_lowpass=1, p_noise=1, p_mp3=1, p_tempo=0,
                                            p_pitch=0), 0, "x", 1)
    a, _ = apply_augmentation(y, SR, full)
    b, _ = apply_augmentation(y, SR, full)
    np.testing.assert_array_equal(a, b)
    assert a.shape == y.shape and np.all(np.isfinite(a))


def test_augment_config_is_validated():
    with pytest.raises(ValueError):
        AugmentConfig(p_noise=1.5)
    with pytest.raises(ValueError):
        AugmentConfig(variants=0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_synthetic_corpus(tmp_path_factory.mktemp("augcorpus"), 4, seed=2)


def test_augmented_example_has_scaled_reference(corpus, tmp_path):
    track = find_tracks(corpus)[0]
    cache = FeatureCache(tmp_path, ModelConfig(attention_layers=1))
    base = load_example(track, cache, TrainConfig())
    params = dict(draw_augmentation(AugmentConfig(**NONE), 0, track.track_id, 0), tempo=1.08)
    aug = load_example(track, cache, TrainConfig(), params)
    assert aug.duration == pytest.approx(base.duration / 1.08, rel=0.01)
    np.testing.assert_allclose(aug.boundaries, base.boundaries / 1.08)
    assert cache.path_for(track.audio, params) != cache.path_for(track.audio)


def test_training_with_augmentation_resumes_to_identical_weights(corpus, tmp_path):
    tracks = find_tracks(corpus)
    tiny = ModelConfig(attention_layers=1)
    aug = AugmentConfig(variants=2, p_pitch=0.0).to_dict()  # tempo, EQ, noise, MP3 stay on
    cfg = TrainConfig(epochs=2, lr=1e-3, patience=10, seed=4, checkpoint_every=1, augment=aug)
    kwargs = dict(cache_dir=tmp_path / "cache", device="cpu", progress=False)
    train(tracks[:3], tracks[3:], tmp_path / "full.pt", tiny, cfg, **kwargs)
    train(tracks[:3], tracks[3:], tmp_path / "cut.pt", tiny, cfg, stop_after_steps=4, **kwargs)
    train(tracks[:3], tracks[3:], tmp_path / "cut.pt", tiny, cfg, resume=True, **kwargs)
    a = read_checkpoint(tmp_path / "full.state.pt")["model"]["state_dict"]
    b = read_checkpoint(tmp_path / "cut.state.pt")["model"]["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The same with the augmented draws prepared in 2 threads ahead of the steps, each run
    # into a cache of its own (so that both compute their draws, neither reads the other's).
    for name in ("tfull", "tcut"):
        threaded = dict(kwargs, cache_dir=tmp_path / f"cache-{name}", data_threads=2)
        if name == "tcut":
            train(tracks[:3], tracks[3:], tmp_path / f"{name}.pt", tiny, cfg,
                  stop_after_steps=4, **threaded)
        train(tracks[:3], tracks[3:], tmp_path / f"{name}.pt", tiny, cfg,
              resume=name == "tcut", **threaded)
    c = read_checkpoint(tmp_path / "tfull.state.pt")["model"]["state_dict"]
    d = read_checkpoint(tmp_path / "tcut.state.pt")["model"]["state_dict"]
    assert all(torch.equal(c[k], d[k]) for k in c)
    # Augmentation changed what the model saw: another run without it ends elsewhere.
    plain = TrainConfig(epochs=2, lr=1e-3, patience=10, seed=4, checkpoint_every=1)
    train(tracks[:3], tracks[3:], tmp_path / "plain.pt", tiny, plain, **kwargs)
    e = read_checkpoint(tmp_path / "plain.state.pt")["model"]["state_dict"]
    assert not all(torch.equal(a[k], e[k]) for k in a)


def test_examples_prepared_ahead_come_in_order_and_stop_when_closed():
    made = []

    def make(i):
        made.append(i)
        return i * 10

    assert list(_ahead(range(7), make, 0)) == [0, 10, 20, 30, 40, 50, 60]
    assert list(_ahead(range(7), make, 3)) == [0, 10, 20, 30, 40, 50, 60]
    made.clear()
    upcoming = _ahead(range(100), make, 2)
    assert [next(upcoming) for _ in range(3)] == [0, 10, 20]
    upcoming.close()
    # At most 2 * workers ahead of what was consumed were started; the rest never runs.
    assert len(made) <= 3 + 2 * 2


def test_data_threads_is_validated(corpus, tmp_path):
    tracks = find_tracks(corpus)
    with pytest.raises(ConfigError, match="data_threads"):
        train(tracks[:3], tracks[3:], tmp_path / "m.pt", ModelConfig(attention_layers=1),
              TrainConfig(epochs=1), device="cpu", progress=False, data_threads=-1)


def test_heavy_effects_leave_light_draws_unchanged_and_stay_in_range():
    light, heavy = AugmentConfig(), AugmentConfig.heavy(variants=3)
    for i in range(50):
        a, b = draw_augmentation(light, 0, f"t{i}", 1), draw_augmentation(heavy, 0, f"t{i}", 1)
        # A light draw is the dict it was before the heavy effects existed.
        assert set(a) == {"gain_db", "eq", "lowpass_hz", "snr_db", "pitch_semitones", "tempo",
                          "mp3_vbr", "noise_seed"}
        assert {"drums_db", "reverb", "compress", "lofi"} <= set(b)
        assert a["gain_db"] == b["gain_db"] and a["noise_seed"] == b["noise_seed"]
    draws = [draw_augmentation(heavy, 0, f"t{i}", v) for i in range(200) for v in range(3)]
    assert all(json.loads(json.dumps(d)) == d for d in draws)
    tempos = [d["tempo"] for d in draws if d["tempo"] is not None]
    assert 0.75 <= min(tempos) < 0.85 and 1.15 < max(tempos) <= 1.25
    drums = [d["drums_db"] for d in draws if d["drums_db"] is not None]
    assert -60 <= min(drums) and max(drums) <= -6
    assert 0.4 < len(drums) / len(draws) < 0.6  # p_drums_down = 0.5
    assert any(d["lofi"] for d in draws) and any(d["reverb"] for d in draws)


def test_drums_down_removes_the_clicks_and_keeps_the_tone():
    from msaf_learned_ssm_training.augment import attenuate_percussion

    tone = _tone(seconds=4.0, f0=330.0)
    clicks = np.zeros_like(tone)
    clicks[SR // 4::SR // 2] = 1.0  # impulses: all percussive
    out = attenuate_percussion(tone + clicks, -60.0)
    assert out.shape == tone.shape and out.dtype == np.float32
    # The impulses lose most of their energy; the steady tone keeps most of its own.
    peaks = np.abs(out[SR // 4::SR // 2])
    assert peaks.max() < 0.35
    inner = slice(SR // 2, -SR // 2)
    assert np.std(out[inner]) == pytest.approx(np.std(tone[inner]), rel=0.2)
    with pytest.raises(ValueError, match="<= 0"):
        attenuate_percussion(tone, 3.0)


def test_heavy_effects_run_and_keep_length():
    y = _tone(seconds=3.0) + 0.05 * np.random.default_rng(0).standard_normal(3 * SR).astype(
        np.float32)
    params = draw_augmentation(AugmentConfig(**NONE), 0, "x", 0)
    params.update(drums_db=-20.0, reverb={"room": 0.8, "wet": 0.4},
                  compress={"threshold_db": -20.0, "ratio": 6.0}, lofi={"bits": 6, "hz": 8000.0})
    out, scale = apply_augmentation(y, SR, params)
    assert scale == 1.0 and out.shape == y.shape and np.isfinite(out).all()
    # Lo-fi at 8 kHz leaves nothing above 4 kHz worth the name.
    spec = np.abs(np.fft.rfft(out))
    freqs = np.fft.rfftfreq(len(out), 1 / SR)
    assert spec[freqs > 5000].mean() < 0.1 * spec[freqs < 3000].mean()
