"""Beat-grid models (issue 12, item 2b): patches centred on estimated beats, novelty
kernels counted in beats, peak picking converted with the track's beat period, and the
training path (cached beats, tempo-scaled for augmented draws, ``--patch-grid`` with
``--init``)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from msaf_learned_ssm import ConfigError, ModelConfig, SSMNet
from msaf_learned_ssm.beats import Beats
from msaf_learned_ssm.checkpoint import load_model, read_checkpoint
from msaf_learned_ssm.cli import main
from msaf_learned_ssm.examples import write_synthetic_corpus
from msaf_learned_ssm.features import (beat_centres, compute_patches, patches_at,
                                       patches_from_steps)
from msaf_learned_ssm.inference import Analyzer

from conftest import hits, untrained_model


def _grid(start: float, stop: float, period: float) -> Beats:
    times = np.arange(start, stop, period)
    return Beats(times, np.arange(len(times)) % 4 + 1)


def test_beat_centres_pick_the_metrical_level_nearest_the_hop():
    beats = _grid(0.0, 60.0, 0.5)
    np.testing.assert_array_equal(beat_centres(beats.times, beats.positions, 0.464),
                                  beats.times)
    # A tracker locked on double tempo: every other beat, the downbeats kept.
    fast = _grid(0.0, 60.0, 0.25)
    kept = beat_centres(fast.times, fast.positions, 0.464)
    np.testing.assert_allclose(kept, fast.times[fast.positions % 2 == 1])
    assert kept[0] == 0.0 and np.allclose(np.diff(kept), 0.5)
    # Half tempo: a centre half-way between consecutive beats.
    slow = _grid(0.0, 60.0, 1.0)
    np.testing.assert_allclose(np.diff(beat_centres(slow.times, slow.positions, 0.464)), 0.5)
    np.testing.assert_array_equal(beat_centres(np.array([3.0]), np.array([1]), 0.464), [3.0])


def test_patches_at_cuts_the_steps_around_each_centre():
    steps = np.arange(200, dtype=np.float32).reshape(2, 100)
    step_times = 0.05 + 0.1 * np.arange(100)
    # 0.5 s: its patch would start before the track; 5.02 and 5.04 s share step 50 (the
    # second is dropped); 9.5 s: its patch would run past the last step.
    patches, times = patches_at(steps, step_times, np.array([0.5, 3.04, 5.02, 5.04, 9.5]), 10)
    np.testing.assert_array_equal(times, [3.04, 5.02])
    np.testing.assert_array_equal(patches[0], steps[:, 20:40])
    np.testing.assert_array_equal(patches[1], steps[:, 40:60])
    empty, none = patches_at(steps, step_times, np.zeros(0), 10)
    assert empty.shape == (0, 2, 20) and none.shape == (0,)


def test_model_config_patch_grid_and_hop():
    with pytest.raises(ConfigError, match="patch_grid"):
        ModelConfig(patch_grid="bar")
    times = np.array([0.0, 0.6, 1.2, 1.9])
    assert ModelConfig(patch_grid="beat").grid_hop_sec(times) == pytest.approx(0.6)
    assert ModelConfig().grid_hop_sec(times) == ModelConfig().patch_hop_sec
    # Model files written before the setting existed are frame-grid models.
    old = {k: v for k, v in ModelConfig().to_dict().items() if k != "patch_grid"}
    assert ModelConfig.from_dict(old).patch_grid == "frame"


def _beat_model(seed: int = 0) -> SSMNet:
    frame = untrained_model(seed=seed)
    model = SSMNet(frame.config.replace(patch_grid="beat")).eval()
    model.load_state_dict(frame.state_dict())
    return model


def test_patches_from_steps_falls_back_to_the_frame_grid_without_beats(planted_track):
    path, _ = planted_track
    y, _ = sf.read(path, dtype="float32")
    config = ModelConfig(patch_grid="beat")
    frame = compute_patches(y, ModelConfig(), keep_mel=True)
    from msaf_learned_ssm.features import steps_from_mel

    steps, step_times = steps_from_mel(frame.mel, config)
    lone = Beats(np.array([10.0]), np.array([1]))
    fallback = patches_from_steps(steps, step_times, frame.duration, config, lone)
    assert fallback.grid == "frame"
    np.testing.assert_array_equal(fallback.times, frame.times)
    on_beats = patches_from_steps(steps, step_times, frame.duration, config,
                                  _grid(0.3, frame.duration, 0.55))
    assert on_beats.grid == "beat" and len(on_beats) > 0


def test_beat_grid_model_segments_on_the_beats(planted_track):
    path, planted = planted_track
    y, _ = sf.read(path, dtype="float32")
    model = _beat_model()
    analyzer = Analyzer(model, "cpu")
    patches = compute_patches(y, model.config, keep_mel=True)
    grid = _grid(0.3, patches.duration, 0.55)
    patches.beats = grid  # a caller's beats are used, not tracked again
    analysis = analyzer.analyze_patches(patches)
    assert set(np.round(analysis.patch_times, 9)) <= set(np.round(grid.times, 9))
    assert set(np.round(analysis.boundaries[1:-1], 9)) <= set(np.round(grid.times, 9))
    assert analysis.beats is grid
    # Beats exactly on the frame grid's patch centres: the same patches, novelty and
    # boundaries as the same weights on the frame grid.
    frame = Analyzer(untrained_model(), "cpu").analyze_patches(
        compute_patches(y, ModelConfig(), keep_mel=True))
    patches.beats = Beats(frame.patch_times, np.ones(len(frame.patch_times), dtype=int))
    same = analyzer.analyze_patches(patches)
    np.testing.assert_allclose(same.novelty, frame.novelty, atol=1e-6)
    np.testing.assert_allclose(same.boundaries, frame.boundaries)
    assert hits(frame.boundaries[1:-1], planted[1:-1]) >= 5
    # The grid is cut from the log-mel: frame patches without it cannot be recut.
    with pytest.raises(ConfigError, match="beat-grid model"):
        analyzer.analyze_patches(compute_patches(y, model.config))


def test_beat_grid_model_from_a_file_tracks_its_own_beats(tmp_path, planted_track):
    from msaf_learned_ssm.checkpoint import save_model

    path, _ = planted_track
    save_model(_beat_model(), tmp_path / "beat.pt")
    analysis = Analyzer(tmp_path / "beat.pt", "cpu").analyze(path)
    assert analysis.beats is not None
    if len(analysis.beats.times) >= 2:  # else the frame grid (tested above)
        centres = beat_centres(analysis.beats.times, analysis.beats.positions,
                               ModelConfig().patch_hop_sec)
        assert set(np.round(analysis.patch_times, 9)) <= set(np.round(centres, 9))


@pytest.fixture()
def fixed_beats(monkeypatch):
    """The training cache's tracker replaced by a fixed 0.5 s grid; counts its calls."""
    import msaf_learned_ssm_training.corpus as corpus

    calls = []

    def track(audio, n_threads):
        calls.append(audio)
        return _grid(0.25, 120.0, 0.5)

    monkeypatch.setattr(corpus, "_track_beats", track)
    return calls


def test_feature_cache_keeps_the_beats_and_scales_them_with_tempo(tmp_path, fixed_beats):
    from msaf_learned_ssm_training.corpus import FeatureCache, find_tracks

    track = find_tracks(write_synthetic_corpus(tmp_path / "corpus", 1))[0]
    cache = FeatureCache(tmp_path / "cache", ModelConfig(patch_grid="beat"))
    first = cache.patches(track.audio)
    assert first.grid == "beat" and len(fixed_beats) == 1
    assert np.allclose(np.diff(first.times), 0.5)
    again = cache.patches(track.audio)
    assert len(fixed_beats) == 1  # read from the cache
    np.testing.assert_array_equal(again.times, first.times)
    faster = cache.patches(track.audio, {"gain_db": 0.0, "eq": None, "lowpass_hz": None,
                                         "snr_db": None, "pitch_semitones": None,
                                         "tempo": 1.05, "mp3_vbr": None, "noise_seed": 0})
    assert np.allclose(np.diff(faster.times), 0.5 / 1.05)
    entry = next((tmp_path / "cache").glob("*-beats*.npz"))
    entry.write_bytes(b"not an npz")
    with pytest.warns(UserWarning, match="corrupt beat cache entry"):
        cache.patches(track.audio)
    assert len(fixed_beats) == 2


def test_fine_tuning_a_frame_model_on_the_beat_grid(tmp_path, fixed_beats):
    from msaf_learned_ssm_training.corpus import find_tracks
    from msaf_learned_ssm_training.trainer import TrainConfig, train

    corpus = write_synthetic_corpus(tmp_path / "corpus", 3, section_sec=8.0)
    tracks = find_tracks(corpus)
    kwargs = dict(cache_dir=tmp_path / "cache", device="cpu", progress=False)
    train(tracks[:2], tracks[2:], tmp_path / "a.pt", ModelConfig(attention_layers=1),
          TrainConfig(epochs=1, lr=1e-3, seed=1), **kwargs)
    train(tracks[:2], tracks[2:], tmp_path / "b.pt", ModelConfig(patch_grid="beat"),
          TrainConfig(epochs=1, lr=1e-3, seed=1), init=tmp_path / "a.pt", **kwargs)
    model, _ = load_model(tmp_path / "b.pt")
    assert model.config.patch_grid == "beat" and model.config.attention_layers == 1
    assert read_checkpoint(tmp_path / "b.pt")["train_config"]["init"].startswith("a.pt")
    # The beat tracker that cut the training patches is recorded; a frame model has none.
    from msaf_learned_ssm.beats import package_tracker_identity

    assert read_checkpoint(tmp_path / "b.pt")["beat_tracker"] == package_tracker_identity()
    assert "beat_tracker" not in read_checkpoint(tmp_path / "a.pt")
    result = CliRunner().invoke(main, [
        "train", str(corpus), "--out", str(tmp_path / "c.pt"), "--init", str(tmp_path / "a.pt"),
        "--patch-grid", "beat", "--epochs", "1", "--val-split", "0.34", "--device", "cpu",
        "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert load_model(tmp_path / "c.pt")[0].config.patch_grid == "beat"


def test_msaf_process_with_a_beat_grid_model(tmp_path, planted_track, monkeypatch):
    import msaf

    from msaf_learned_ssm.checkpoint import save_model

    monkeypatch.chdir(tmp_path)  # MSAF's single-file feature cache goes to the cwd
    path, _ = planted_track
    save_model(_beat_model(), tmp_path / "beat.pt")
    own = Analyzer(tmp_path / "beat.pt", "cpu").analyze(path)
    cfg = msaf.io.get_configuration("learned_ssm", False, True, "learned_ssm", None)
    cfg.update(ssm_model=str(tmp_path / "beat.pt"), ssm_device="cpu", features=None)
    for hier in (False, True):
        times, _ = msaf.process(str(path), feature="learned_ssm", framesync=True,
                                boundaries_id="learned_ssm", labels_id=None, config=cfg,
                                hier=hier)
        flat = times[0] if hier else times
        frame_sec = msaf.config.hop_size / msaf.config.sample_rate
        inner = flat[1:-1][flat[1:-1] < flat[-1] - 2 * frame_sec]  # MSAF's last-frame boundary
        assert len(inner) == len(own.boundaries) - 2
        assert np.abs(inner - own.boundaries[1:-1]).max() <= frame_sec


def test_beat_grid_labels_change_at_the_patch_nearest_each_boundary(tmp_path, fixed_beats):
    from msaf_learned_ssm_training.corpus import FeatureCache, find_tracks
    from msaf_learned_ssm_training.targets import patch_labels
    from msaf_learned_ssm_training.trainer import TrainConfig, load_example

    times = np.array([0.9, 1.4, 1.9, 2.4])
    intervals = np.array([[0.0, 2.0], [2.0, 4.0]])
    np.testing.assert_array_equal(patch_labels(times, intervals, "AB"), [0, 0, 0, 1])
    np.testing.assert_array_equal(patch_labels(times, intervals, "AB", 0.25), [0, 0, 1, 1])
    # Sections of 11.9 s on a grid 0.25 + 0.5 k: the first change is at 11.75 s (0.15 s
    # before the boundary), not at 12.25 s as the frame grid's rule would put it.
    track = find_tracks(write_synthetic_corpus(tmp_path / "corpus", 1, section_sec=11.9))[0]
    cache = FeatureCache(tmp_path / "cache", ModelConfig(patch_grid="beat"))
    example = load_example(track, cache, TrainConfig())
    first_change = example.patch_times[np.flatnonzero(np.diff(example.label_ids))[0] + 1]
    assert first_change == pytest.approx(11.75)
    frame = load_example(track, FeatureCache(tmp_path / "cache", ModelConfig()), TrainConfig())
    assert frame.patch_times[np.flatnonzero(np.diff(frame.label_ids))[0] + 1] > 11.9
