"""Beat and downbeat tracking, bar-synchronous boundaries, and their outputs."""

from __future__ import annotations

import json

import jams
import mir_eval
import numpy as np
import pytest
import torch

from conftest import write_click_track_corpus
from msaf_learned_ssm.beats import (BeatConfig, Beats, BeatTCN, BeatTracker, bar_positions,
                                    chroma_per_beat, decode_beats, harmonic_change,
                                    load_beat_model, package_tracker_identity,
                                    save_beat_model, snap_to_grid, tracker_frames)
from msaf_learned_ssm.errors import CheckpointError, ConfigError
from msaf_learned_ssm.sync import sync_boundaries

FRAME = BeatConfig().frame_sec


def _impulse_activation(n_frames: int, period_sec: float, first_sec: float, meter: int,
                        first_position: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Activations with a beat every ``period_sec`` (beat and downbeat rows)."""
    times = (np.arange(n_frames) + 0.5) * FRAME
    beats = np.arange(first_sec, times[-1] - period_sec, period_sec)
    positions = (np.arange(len(beats)) + first_position - 1) % meter + 1
    act = np.full((2, n_frames), 0.01)
    for t, p in zip(beats, positions):
        f = int(np.argmin(np.abs(times - t)))
        act[0, f] = 0.95
        act[0, max(f - 1, 0)] = max(act[0, max(f - 1, 0)], 0.3)
        act[0, min(f + 1, n_frames - 1)] = max(act[0, min(f + 1, n_frames - 1)], 0.3)
        act[1, f] = 0.9 if p == 1 else 0.05
    return act, times, beats[positions == 1]


def test_decode_recovers_a_steady_beat_and_its_downbeats():
    act, times, downbeats = _impulse_activation(1300, 0.5, 1.0, 4, first_position=3)
    est = decode_beats(act, times)
    ref = np.arange(1.0, times[-1] - 0.5, 0.5)
    assert mir_eval.beat.f_measure(ref, est.times) > 0.95
    assert mir_eval.beat.f_measure(downbeats, est.downbeats) > 0.95
    assert set(np.unique(est.positions)) <= {1, 2, 3, 4}


def test_decode_finds_triple_metre():
    act, times, downbeats = _impulse_activation(1300, 0.6, 0.8, 3)
    est = decode_beats(act, times)
    assert est.positions.max() == 3
    assert mir_eval.beat.f_measure(downbeats, est.downbeats) > 0.9


def _chords_every(n_beats: int, beats_per_chord: int, first_change: int) -> np.ndarray:
    """Chroma rows (n_beats, 12): a new triad every ``beats_per_chord`` beats, the first
    change at beat ``first_change``."""
    triads = [(0, 4, 7), (2, 5, 9), (3, 6, 10), (1, 8, 11)]  # no pitch class shared
    rows = np.zeros((n_beats, 12))
    for i in range(n_beats):
        chord = triads[((i - first_change) // beats_per_chord + 1) % len(triads)]
        rows[i, list(chord)] = 1.0
    return rows


def test_harmonic_change_peaks_where_the_chord_changes():
    change = harmonic_change(_chords_every(40, 4, 2), context=2)
    assert change.shape == (40,) and change.min() >= 0 and change.max() <= 1
    on = change[np.arange(6, 36, 4)]  # changes at 2, 6, 10...; the ends lack context
    off = np.delete(change[4:36], np.arange(2, 32, 4))
    assert on.min() == 1.0 and off.max() < 0.5
    assert not harmonic_change(np.ones((40, 12))).any()  # no change: no cue
    assert not harmonic_change(_chords_every(4, 1, 0), context=2).any()  # too short


def test_chroma_per_beat_takes_the_median_from_each_beat_to_the_next():
    frames = np.zeros((100, 12))
    frames[:50, 0], frames[50:, 7] = 1.0, 1.0
    rows = chroma_per_beat(frames, 0.1, np.array([0.0, 2.0, 5.0, 9.95, 20.0]))
    np.testing.assert_array_equal(rows[:, 0], [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(rows[:, 7], [0, 0, 1, 1, 0])  # past the end: zeros


def test_chord_changes_set_the_bar_phase_when_the_downbeat_activation_cannot():
    act, times, _ = _impulse_activation(1300, 0.5, 1.0, 4)
    act[1] = np.where(act[0] > 0.9, 0.3, 0.01)  # every beat equally likely a downbeat
    beat_times = np.arange(1.0, times[-1] - 0.5, 0.5)
    rows = _chords_every(len(beat_times), 4, first_change=1)  # bars start at beat 1, 5...
    hop = 0.05
    frames = rows[np.clip(np.searchsorted(beat_times, np.arange(0, times[-1], hop),
                                          side="right") - 1, 0, None)]
    est = decode_beats(act, times, chroma=(frames, hop))
    assert mir_eval.beat.f_measure(beat_times[1::4], est.downbeats) > 0.9
    off = decode_beats(act, times, chroma=(frames, hop), harmony_weight=0.0)
    np.testing.assert_allclose(off.times, est.times)  # the beats never depend on it
    assert mir_eval.beat.f_measure(beat_times[1::4], off.downbeats) < 0.5
    with pytest.raises(ValueError, match="chroma must be"):
        decode_beats(act, times, chroma=(frames[:, 0], hop))


def test_the_tracker_identity_records_the_decoder_version():
    from msaf_learned_ssm.beats import DECODER_VERSION

    assert package_tracker_identity()["decoder"] == DECODER_VERSION >= 2


def test_offbeat_ratio_and_the_tempo_octave_check():
    from msaf_learned_ssm.beats import offbeat_ratio

    act = np.zeros(200)
    act[10::20] = 1.0
    act[20::20] = 0.8  # a pulse halfway between the beats, almost as strong
    frames = np.arange(10, 190, 20)
    assert offbeat_ratio(act, frames) == pytest.approx(0.8)
    on_beats_only = act * (np.arange(200) % 20 == 10)
    assert offbeat_ratio(on_beats_only, frames) == pytest.approx(0.0)
    assert np.isnan(offbeat_ratio(act, frames[:2]))
    # A steady beat at 60 BPM with no pulse between the beats: the check keeps the
    # tempo; forced (ratio 0), the beats are redone at twice the tempo.
    act2, times, _ = _impulse_activation(1300, 1.0, 1.0, 4)
    plain = decode_beats(act2, times, double_tempo_ratio=None)
    kept = decode_beats(act2, times, double_tempo_ratio=0.5)
    forced = decode_beats(act2, times, double_tempo_ratio=0.0)
    assert len(kept.times) == len(plain.times)
    assert np.median(np.diff(forced.times)) == pytest.approx(
        np.median(np.diff(plain.times)) / 2, rel=0.05)


def test_decode_of_silence_is_empty_and_nan_is_refused():
    times = (np.arange(400) + 0.5) * FRAME
    assert len(decode_beats(np.zeros((2, 400)), times).times) == 0
    bad = np.zeros((2, 400))
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        decode_beats(bad, times)
    with pytest.raises(ValueError, match="shape"):
        decode_beats(np.zeros((3, 400)), times)


def test_bar_positions_follow_the_downbeat_evidence_and_allow_an_irregular_bar():
    # 4/4 with the first downbeat on beat 2, then a 2-beat bar, then 4/4 again.
    truth = [2, 3, 4] + [1, 2, 3, 4] * 4 + [1, 2] + [1, 2, 3, 4] * 4
    strength = np.where(np.array(truth) == 1, 0.8, 0.1)
    assert bar_positions(strength).tolist() == truth


def test_a_downbeat_prior_removes_the_bias_toward_long_bars():
    """Strengths used as likelihoods make every downbeat cost when they are below 0.5, so
    weak evidence every 2nd beat still gives 4-beat bars; divided by the prior, 2."""
    strength = np.tile([0.4, 0.05], 16)
    assert bar_positions(strength, (2, 4)).tolist()[:8] == [1, 2, 3, 4] * 2
    assert bar_positions(strength, (2, 4), downbeat_prior=0.25).tolist()[:8] == [1, 2] * 4
    strong = np.where(np.arange(32) % 4 == 0, 0.8, 0.1)  # clear 4/4 evidence stays 4/4
    assert bar_positions(strong, (2, 4), downbeat_prior=0.25).tolist()[:8] == [1, 2, 3, 4] * 2


def test_snap_to_grid_moves_merges_and_keeps_the_ends():
    grid = np.array([2.0, 4.0, 6.0, 8.0])
    out = snap_to_grid(np.array([0.0, 2.4, 3.7, 5.1, 9.9, 10.0]), grid, max_shift=1.0)
    # 2.4 and 3.7 -> 2 and 4; 5.1 -> 6 (nearest, 0.9 s); 9.9 is 1.9 s from 8: stays.
    assert out.tolist() == [0.0, 2.0, 4.0, 6.0, 9.9, 10.0]
    merged = snap_to_grid(np.array([0.0, 3.9, 4.2, 10.0]), grid, max_shift=1.0)
    assert merged.tolist() == [0.0, 4.0, 10.0]
    assert snap_to_grid(np.array([0.0, 3.0, 10.0]), np.zeros(0), 1.0).tolist() == [0, 3, 10]


def test_sync_boundaries_modes():
    beats = Beats(np.arange(0.5, 20, 0.5), (np.arange(39) % 4) + 1)
    b = np.array([0.0, 5.2, 11.1, 20.0])
    assert sync_boundaries(b, beats, "frame").tolist() == b.tolist()
    assert sync_boundaries(b, beats, "beat").tolist() == [0.0, 5.0, 11.0, 20.0]
    # Bar mode: to a downbeat within one beat period (4.7 -> 4.5), else to the nearest
    # beat (11.1: the nearest downbeat, 10.5, is 1.2 beats away -> 11.0).
    bar = sync_boundaries(np.array([0.0, 4.7, 11.1, 20.0]), beats, "bar")
    assert bar.tolist() == [0.0, 4.5, 11.0, 20.0]
    always = sync_boundaries(np.array([0.0, 4.7, 11.1, 20.0]), beats, "bar", 2.0)
    assert always.tolist() == [0.0, 4.5, 10.5, 20.0]
    with pytest.raises(ConfigError, match="sync must be one of"):
        sync_boundaries(b, beats, "bars")


def test_network_shapes_and_input_check():
    model = BeatTCN(BeatConfig(channels=8, dilations=(1, 2)))
    out = model(torch.zeros(2, 80, 50))
    assert out.shape == (2, 2, 50)
    with pytest.raises(ValueError, match="expected frames"):
        model(torch.zeros(2, 40, 50))
    with pytest.raises(ConfigError, match="odd"):
        BeatConfig(kernel_size=4)


def test_tracker_frames_are_pair_means_with_centred_times():
    mel = np.arange(2 * 7, dtype=np.float32).reshape(2, 7)
    frames, times = tracker_frames(mel, 2, 0.1)
    assert frames.shape == (2, 3)
    assert np.allclose(frames[0], [0.5, 2.5, 4.5])
    assert np.allclose(times, [0.05, 0.25, 0.45])


def test_model_file_round_trip_and_refusals(tmp_path):
    model = BeatTCN(BeatConfig(channels=8, dilations=(1, 2)))
    path = tmp_path / "beats.pt"
    save_beat_model(model, path, epoch=3)
    loaded, meta = load_beat_model(path)
    assert meta["epoch"] == 3
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    with torch.no_grad():
        model.head.weight.fill_(float("nan"))
    save_beat_model(model, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="non-finite"):
        load_beat_model(tmp_path / "nan.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a beat-tracker file"):
        load_beat_model(tmp_path / "other.pt")


def test_shipped_tracker_finds_the_beat_of_a_click_track():
    sr, bpm = 22050, 100
    period = 60 / bpm
    y = np.zeros(sr * 30, dtype=np.float32)
    t_click = np.arange(0, 0.03, 1 / sr)
    beats = np.arange(1.0, 29.0, period)
    for i, t in enumerate(beats):
        start = int(t * sr)
        # Accented downbeats (every 4th click, louder and lower) like a kick on beat 1.
        f, a = (500.0, 1.0) if i % 4 == 0 else (1500.0, 0.4)
        click = a * np.sin(2 * np.pi * f * t_click) * np.exp(-t_click * 120)
        y[start:start + len(click)] += click.astype(np.float32)
    est = BeatTracker().track(y)
    assert mir_eval.beat.f_measure(mir_eval.beat.trim_beats(beats),
                                   mir_eval.beat.trim_beats(est.times)) > 0.8


def test_analyzer_bar_mode_puts_boundaries_on_the_beat_grid(planted_track, untrained_model_path):
    from msaf_learned_ssm.inference import Analyzer

    path, _ = planted_track
    beat_model = BeatTCN(BeatConfig(channels=8, dilations=(1, 2, 4)))
    frame = Analyzer(untrained_model_path, "cpu").analyze(path)
    analyzer = Analyzer(untrained_model_path, "cpu", sync="bar", beat_model=beat_model)
    bar = analyzer.analyze(path)
    assert bar.sync == "bar" and frame.sync == "frame" and frame.beats is None
    if len(bar.beats.times) >= 2:
        moved = set(np.round(bar.boundaries[1:-1], 6)) - set(np.round(frame.boundaries, 6))
        assert moved <= set(np.round(bar.beats.times, 6))
    # Per-call override, and the frame-mode result when asked for.
    again = analyzer.analyze(path, sync="frame")
    assert np.allclose(again.boundaries, frame.boundaries)
    with pytest.raises(ConfigError, match="sync must be one of"):
        Analyzer(untrained_model_path, "cpu", sync="downbeat")


def test_estimation_jams_records_sync_and_beats(tmp_path, planted_track, untrained_model_path):
    from msaf_learned_ssm.inference import Analyzer
    from msaf_learned_ssm.output_plan import OutputPlan
    from msaf_learned_ssm.result_files import write_results

    path, _ = planted_track
    # A tracker whose head always says "beat": a dense grid, so beats are written.
    beat_model = BeatTCN(BeatConfig(channels=8, dilations=(1, 2)))
    analyzer = Analyzer(untrained_model_path, "cpu", sync="beat", beat_model=beat_model)
    result = analyzer.analyze(path)
    result.beats = Beats(np.arange(0.5, 150, 0.5), (np.arange(299) % 4) + 1)
    out = tmp_path / "est.jams"
    for _ in range(2):  # a rerun replaces, never duplicates
        write_results(OutputPlan(out, None), result, analyzer.identity, analyzer.peaks)
    jam = jams.load(str(out))
    segs = jam.search(namespace="segment_open")
    beats = jam.search(namespace="beat")
    assert len(segs) == 1 and len(beats) == 1
    assert segs[0].sandbox.ssm_sync == "beat"
    assert [o.value for o in beats[0].data][:5] == [1, 2, 3, 4, 1]


def test_cli_sync_option(tmp_path, planted_track, untrained_model_path):
    from click.testing import CliRunner

    from msaf_learned_ssm.cli import main

    path, _ = planted_track
    out = tmp_path / "out.jams"
    result = CliRunner().invoke(main, ["segment", str(path), "--model", str(untrained_model_path),
                                       "--device", "cpu", "--sync", "beat", "--beats",
                                       "package", "-o", str(out)])
    assert result.exit_code == 0, result.output
    jam = json.loads(out.read_text())
    assert {a["namespace"] for a in jam["annotations"]} >= {"segment_open"}
    assert jam["annotations"][0]["sandbox"]["ssm_sync"] == "beat"
    bad = CliRunner().invoke(main, ["segment", str(path), "--sync", "bars"])
    assert bad.exit_code == 2 and "bars" in bad.output


def test_tracker_training_resumes_to_identical_weights(tmp_path):
    from msaf_learned_ssm_training.beat_training import BeatTrainConfig, train_tracker
    from msaf_learned_ssm_training.corpus import find_tracks

    write_click_track_corpus(tmp_path / "corpus")
    tracks = find_tracks(tmp_path / "corpus")
    small = BeatConfig(channels=8, dilations=(1, 2, 4))
    cfg = dict(batch_size=2, crop_frames=200, augment_variants=0, patience=5)
    straight = train_tracker(tracks[:2], tracks[2:], tmp_path / "a" / "beats.pt",
                             BeatTrainConfig(epochs=2, **cfg), small,
                             cache_dir=tmp_path / "cache", progress=False)
    train_tracker(tracks[:2], tracks[2:], tmp_path / "b" / "beats.pt",
                  BeatTrainConfig(epochs=1, **cfg), small, cache_dir=tmp_path / "cache",
                  progress=False)
    resumed = train_tracker(tracks[:2], tracks[2:], tmp_path / "b" / "beats.pt",
                            BeatTrainConfig(epochs=2, **cfg), small,
                            cache_dir=tmp_path / "cache", resume=True, progress=False)
    assert straight["epochs_run"] == resumed["epochs_run"] == 2
    a = torch.load(tmp_path / "a" / "beats.state.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "beats.state.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len((tmp_path / "b" / "beats.log.jsonl").read_text().splitlines()) == 2
    # An existing run is not replaced without --resume or --overwrite.
    from msaf_learned_ssm.errors import OutputError
    with pytest.raises(OutputError, match="exists"):
        train_tracker(tracks[:2], tracks[2:], tmp_path / "b" / "beats.pt",
                      BeatTrainConfig(epochs=1, **cfg), small, cache_dir=tmp_path / "cache",
                      progress=False)


def test_tracker_fine_tune_starts_from_the_initial_tracker(tmp_path):
    """--init keeps the initial tracker's architecture and weights; heavy augmentation adds
    one heavy draw of each validation track to the validation set."""
    from msaf_learned_ssm_training.beat_training import (BeatTrainConfig, _load_all,
                                                         train_tracker)
    from msaf_learned_ssm_training.corpus import find_tracks
    from msaf_learned_ssm_training.beat_training import TrackerFrameCache
    from msaf_learned_ssm.errors import LearnedSSMError

    write_click_track_corpus(tmp_path / "corpus")
    tracks = find_tracks(tmp_path / "corpus")
    small = BeatConfig(channels=8, dilations=(1, 2, 4))
    init = tmp_path / "init.pt"
    torch.manual_seed(3)
    save_beat_model(BeatTCN(small), init)
    cfg = BeatTrainConfig(epochs=1, batch_size=2, crop_frames=200, augment_variants=1,
                          augment="heavy", init=str(init), lr=1e-9)
    train_tracker(tracks[:2], tracks[2:], tmp_path / "ft.pt", cfg,
                  cache_dir=tmp_path / "cache", progress=False)
    before, _ = load_beat_model(init)
    after, meta = load_beat_model(tmp_path / "ft.pt")
    assert after.config == small  # the initial tracker's architecture, not the default
    # lr 1e-9: one step moves nothing visibly, so the weights are the initial ones.
    for k, v in before.state_dict().items():
        torch.testing.assert_close(after.state_dict()[k], v, atol=1e-6, rtol=0)
    assert meta["train_config"]["augment"] == "heavy"
    skipped: dict = {}
    val = _load_all(tracks[2:], TrackerFrameCache(tmp_path / "cache", small), cfg, False,
                    skipped, False, "validation")
    assert [len(v) for v in val] == [2] * len(tracks[2:]) and not skipped
    with pytest.raises(LearnedSSMError, match="augment must be one of"):
        BeatTrainConfig(augment="extreme")


def test_beat_targets_widen_and_mark_downbeats():
    from msaf_learned_ssm_training.beat_training import beat_targets

    times = np.arange(20) * 0.1
    t = beat_targets(np.array([0.5, 1.0, 1.5]), np.array([1, 2, 1]), times)
    assert t[0, [5, 10, 15]].tolist() == [1, 1, 1]
    assert t[0, [4, 6, 9, 11]].tolist() == [0.5] * 4
    assert t[1, [5, 15]].tolist() == [1, 1] and t[1, 10] == 0 and t[1, 9] == 0


def test_pop909_beats_follow_the_annotators_bars(shared_data):
    from msaf_learned_ssm_jams.pop909 import pop909_bar_grid, pop909_beats

    times, positions = pop909_beats("001", shared_data / "pop909", shared_data / "pop909_structure")
    grid = pop909_bar_grid("001", shared_data / "pop909", shared_data / "pop909_structure")
    bar_starts = grid["beat_times"][grid["bar_start_beats"]]
    downbeats = times[positions == 1]
    common = bar_starts[bar_starts <= times[-1]]
    assert np.allclose(downbeats[:len(common)], common[:len(downbeats)])
    assert set(positions) == {1, 2, 3, 4}


def test_benches_and_the_analyzer_decode_the_same_bars(planted_track, untrained_model_path):
    """bench/candidates.py, sync_modes.py and speed.py track beats with track_patches, as
    the Analyzer does: the chroma reaches the bar decoder on both paths."""
    from msaf_learned_ssm.audio import load_audio
    from msaf_learned_ssm.features import compute_patches
    from msaf_learned_ssm.inference import Analyzer

    path, _ = planted_track
    analyzer = Analyzer(untrained_model_path, "cpu", sync="bar", beat_model="package")
    patches = compute_patches(load_audio(path, analyzer.config.sample_rate),
                              analyzer.config, keep_mel=True)
    assert patches.chroma is not None  # kept for the tracker
    beats = analyzer.tracker.track_patches(patches)
    result = analyzer.analyze(path)
    np.testing.assert_allclose(beats.times, result.beats.times)
    np.testing.assert_array_equal(beats.positions, result.beats.positions)
    without = analyzer.tracker.track_mel(patches.mel)
    np.testing.assert_allclose(without.times, beats.times)
    with pytest.raises(ValueError, match="keep_mel=True"):
        analyzer.tracker.track_patches(compute_patches(
            load_audio(path, analyzer.config.sample_rate), analyzer.config))
