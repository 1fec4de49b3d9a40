"""MSAF integration: registration, single-file and collection modes (also with joblib
workers), frame mapping in frame- and beat-synchronous modes, labels, and msaf.eval."""

from __future__ import annotations

import json
import shutil
import warnings

import jams
import numpy as np
import pytest
import soundfile as sf

import msaf
import msaf_learned_ssm
from msaf_learned_ssm import Analyzer
from msaf_learned_ssm.msaf_plugin import (PluginTag, boundaries_to_msaf_indices,
                                          times_to_frame_indices)

from conftest import untrained_model

MSAF_FRAME_SEC = msaf.config.hop_size / msaf.config.sample_rate


@pytest.fixture(autouse=True)
def _own_cwd(tmp_path, monkeypatch):
    # MSAF's single-file mode keeps its feature cache in ./.features_msaf_tmp.json.
    monkeypatch.chdir(tmp_path)


def _config(model_path, feature="learned_ssm", framesync=True, labels_id=None):
    cfg = msaf.io.get_configuration(feature, False, framesync, "learned_ssm", labels_id)
    cfg["ssm_model"] = str(model_path)
    cfg["ssm_device"] = "cpu"
    cfg["features"] = None
    return cfg


def test_registered_as_msaf_algorithm():
    module = msaf.algorithms.learned_ssm
    assert "learned_ssm" in msaf.algorithms.__all__
    assert module.is_boundary_type and module.is_label_type and module.algo_id == "learned_ssm"
    assert issubclass(module.Segmenter, msaf.algorithms.interface.SegmenterInterface)
    json.dumps(module.config)  # MSAF writes it into the estimation JAMS
    assert isinstance(module.config["ssm_plugin"], PluginTag)
    msaf_learned_ssm.register()  # idempotent
    assert msaf.algorithms.__all__.count("learned_ssm") == 1
    assert "learned_ssm" in msaf.base.features_registry


def test_times_to_frame_indices_nearest():
    frame_times = np.array([0.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(times_to_frame_indices([0.2, 0.6, 2.9, 7.0], frame_times),
                                  [0, 1, 3, 3])
    np.testing.assert_array_equal(boundaries_to_msaf_indices(np.array([1.1, 1.2, 2.0]),
                                                             np.arange(6.0)), [0, 1, 2, 5])


def test_single_file_framesync_within_one_frame(planted_track, untrained_model_path):
    path, _ = planted_track
    own = Analyzer(untrained_model_path, "cpu").analyze(path).boundaries
    times, labels = msaf.process(str(path), feature="learned_ssm", framesync=True,
                                 boundaries_id="learned_ssm", labels_id=None,
                                 config=_config(untrained_model_path))
    inner_msaf, inner_own = times[1:-1], own[1:-1]
    # MSAF adds a boundary at its last frame (just before the end): ignore it.
    inner_msaf = inner_msaf[inner_msaf < times[-1] - 2 * MSAF_FRAME_SEC]
    assert len(inner_msaf) == len(inner_own)
    assert np.abs(inner_msaf - inner_own).max() <= MSAF_FRAME_SEC
    assert len(labels) == len(times) - 1


def test_beatsync_snaps_to_nearest_beat_not_one_late(planted_track, untrained_model_path):
    path, _ = planted_track
    own = Analyzer(untrained_model_path, "cpu").analyze(path).boundaries[1:-1]
    cfg = _config(untrained_model_path, feature="pcp", framesync=False)
    times, _ = msaf.process(str(path), boundaries_id="learned_ssm", labels_id=None, config=cfg)
    features = msaf.features.PCP(msaf.io.FileStruct(str(path)),
                                 msaf.base.FeatureTypes.est_beatsync)
    features.file_struct.features_file = msaf.config.features_tmp_file
    stamps = features.frame_times
    for t in own:
        nearest = stamps[np.argmin(np.abs(stamps - t))]
        assert np.any(np.isclose(times, nearest)), (t, nearest, times)


def test_learned_labels_on_planted_sections(planted_track, untrained_model_path):
    path, planted = planted_track
    times, labels = msaf.process(str(path), feature="learned_ssm", framesync=True,
                                 boundaries_id="learned_ssm", labels_id="learned_ssm",
                                 config=_config(untrained_model_path, labels_id="learned_ssm"))
    assert len(labels) == len(times) - 1
    assert len(np.unique(labels)) >= 2


@pytest.fixture()
def collection(tmp_path, planted_track):
    """An MSAF dataset folder: audio/ with two tracks, references/ with their JAMS."""
    path, planted = planted_track
    (tmp_path / "audio").mkdir()
    (tmp_path / "references").mkdir()
    y, sr = sf.read(path)
    for name in ("one", "two"):
        # One WAV and one FLAC: MSAF alone lists only .wav/.mp3/.aif in collection mode.
        if name == "one":
            shutil.copy(path, tmp_path / "audio" / f"{name}.wav")
        else:
            sf.write(tmp_path / "audio" / f"{name}.flac", y, sr)
        jam = jams.JAMS()
        jam.file_metadata.duration = float(planted[-1])
        ann = jams.Annotation(namespace="segment_open", duration=float(planted[-1]))
        for start, end, label in zip(planted[:-1], planted[1:], "ABCDBADC"):
            ann.append(time=float(start), duration=float(end - start), value=label)
        jam.annotations.append(ann)
        jam.save(str(tmp_path / "references" / f"{name}.jams"))
    return tmp_path


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_collection_mode_and_eval(collection, untrained_model_path, n_jobs):
    cfg = _config(untrained_model_path)
    results = msaf.process(str(collection), feature="learned_ssm", framesync=True,
                           boundaries_id="learned_ssm", labels_id=None, n_jobs=n_jobs,
                           config=cfg)
    assert len(results) == 2
    for times, labels in results:
        assert times[0] == 0 and len(labels) == len(times) - 1
    refs = sorted((collection / "references").iterdir())
    before = [p.read_bytes() for p in refs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = msaf.eval.process(str(collection), boundaries_id="learned_ssm", labels_id=None,
                                   feature="learned_ssm", framesync=True, n_jobs=n_jobs,
                                   config=_config(untrained_model_path))
    assert len(scores) == 2
    assert scores["HitRate_3F"].mean() > 0.5
    assert [p.read_bytes() for p in refs] == before  # references untouched


def test_untrained_model_module_default_is_json_safe():
    # The config MSAF stores must round-trip through JSON with the same values.
    cfg = dict(msaf.algorithms.learned_ssm.config)
    assert json.loads(json.dumps(cfg)) == cfg
    assert untrained_model() is not None


def test_hierarchical_two_nested_levels(planted_track, untrained_model_path):
    path, _ = planted_track
    cfg = _config(untrained_model_path, labels_id=None)
    times, labels = msaf.process(str(path), feature="learned_ssm", framesync=True,
                                 boundaries_id="learned_ssm", labels_id=None, hier=True,
                                 config=cfg)
    assert len(times) == 2 and len(labels) == 2
    coarse, fine = times
    assert len(fine) >= len(coarse)
    assert all(np.isclose(fine, t).any() for t in coarse)
    for level_times, level_labels in zip(times, labels):
        assert len(level_labels) == len(level_times) - 1


def test_unknown_ssm_setting_is_an_error_with_a_suggestion():
    from msaf_learned_ssm import msaf_plugin
    from msaf_learned_ssm.errors import ConfigError

    msaf_plugin.check_config(dict(msaf_plugin.config, other_algo_key=1))  # not ours: fine
    with pytest.raises(ConfigError, match="did you mean 'ssm_peak_min_distance_sec'"):
        msaf_plugin.check_config(dict(msaf_plugin.config, ssm_peak_distance_sec=7.0))


def test_plugin_settings_come_from_the_dataclasses_and_the_model():
    import dataclasses

    from msaf_learned_ssm import msaf_plugin
    from msaf_learned_ssm.config import FINE_LEVEL_PEAKS, PeakConfig

    keys = {f"ssm_peak_{f.name}" for f in dataclasses.fields(PeakConfig)}
    assert keys <= set(msaf_plugin.config)
    assert all(msaf_plugin.config[k] is None for k in keys)  # None: the model's own
    model_peaks = PeakConfig(8.0, 5.0, 1.2)
    assert msaf_plugin.peak_config(msaf_plugin.config, model_peaks) == model_peaks
    changed = dict(msaf_plugin.config, ssm_peak_threshold=1.5)
    assert msaf_plugin.peak_config(changed, model_peaks) == PeakConfig(8.0, 5.0, 1.5)
    fine = msaf_plugin.fine_peak_config(msaf_plugin.config, model_peaks)
    assert fine == PeakConfig(8.0, FINE_LEVEL_PEAKS.min_distance_sec, FINE_LEVEL_PEAKS.threshold)


def test_learned_ssm_feature_matches_msafs_own_computations():
    """The feature computes RMS and beat-synchronous means without librosa; same values."""
    import librosa

    from msaf_learned_ssm.msaf_features import LearnedSSMGrid, frame_rms

    y = np.random.default_rng(0).standard_normal(22050 * 5 + 123).astype(np.float32)
    np.testing.assert_allclose(frame_rms(y, 2048, 1024),
                               librosa.feature.rms(y=y, frame_length=2048, hop_length=1024)[0],
                               atol=1e-6)
    grid = LearnedSSMGrid.__new__(LearnedSSMGrid)
    grid.sr, grid.hop_length = 22050, 1024
    grid._framesync_features = np.random.default_rng(1).standard_normal((100, 1))
    grid._framesync_times = np.arange(100) * 1024 / 22050
    beats = np.array([3, 10, 50, 99])
    synced, times = grid.compute_beat_sync_features(beats, grid._framesync_times[beats], True)
    np.testing.assert_allclose(synced, librosa.util.sync(grid._framesync_features.T, beats,
                                                         pad=True).T)
    assert len(times) == len(synced)


def test_learned_ssm_feature_shares_the_beats_of_the_features_file(collection,
                                                                   untrained_model_path):
    """All features of a track share one beat grid in MSAF's features file. The feature
    reuses beats another feature wrote, and stays consistent when a later feature
    rewrites them (beat-synchronous frames and their times keep one length)."""
    from msaf.base import Features

    cfg = _config(untrained_model_path, feature="learned_ssm", framesync=False)
    msaf.process(str(collection), feature="learned_ssm", framesync=False,
                 boundaries_id="learned_ssm", labels_id=None, config=cfg)
    fs = next(f for f in msaf.io.get_dataset_files(str(collection))
              if f.audio_file.endswith("one.wav"))
    # Another feature (MSAF's own tracker) rewrites the shared beats: every 0.5 s.
    data = json.loads(open(fs.features_file).read())
    data["est_beats"] = list(np.arange(0.5, data["globals"]["dur"] - 0.5, 0.5))
    data["est_beatsync_times"] = data["est_beats"]
    open(fs.features_file, "w").write(json.dumps(data))
    feats = Features.select_features("learned_ssm", fs, False, False)
    assert feats.features.shape[0] == len(feats.frame_times)
    results = msaf.process(str(collection), feature="learned_ssm", framesync=False,
                           boundaries_id="learned_ssm", labels_id=None, config=cfg)
    assert all(times[0] == 0 for times, _ in results)
    # A features file that holds beats: the feature reuses them.
    fresh = Features.select_features("learned_ssm", fs, False, False)
    fresh.features  # reads the file (and learns the track's duration)
    assert np.allclose(fresh._shared_beats(), data["est_beats"])
    assert np.allclose(fresh._est_beats_times, data["est_beats"])


def test_labels_of_given_boundaries_with_the_package_feature(planted_track,
                                                             untrained_model_path, tmp_path):
    """MSAF's label path on given boundaries (``boundaries_id="gt"``, what label evaluation
    on annotated boundaries runs) with ``feature="learned_ssm"``: MSAF's own feature check
    refused it before."""
    from msaf.base import Features

    audio = tmp_path / "audio" / "track.wav"
    audio.parent.mkdir()
    (tmp_path / "features").mkdir()
    shutil.copyfile(planted_track[0], audio)
    fs = msaf.input_output.FileStruct(str(audio))
    config = _config(untrained_model_path, labels_id="learned_ssm")
    config["features"] = Features.select_features("learned_ssm", fs, False, True)
    config["hier"] = False
    n_frames = config["features"].features.shape[0]
    idxs = np.array([0, n_frames // 3, 2 * n_frames // 3, n_frames - 1])
    module = msaf.run.get_labels_module("learned_ssm")
    est_idxs, labels = module.Segmenter(fs, in_bound_idxs=idxs, **config).processFlat()
    np.testing.assert_array_equal(est_idxs, idxs)
    assert len(labels) == len(idxs) - 1
