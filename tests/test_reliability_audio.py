"""Reliability of audio input: every bad file gives an AudioLoadError that names it (or, for
audio too short or silent to segment, a trivial segmentation and a ShortAudioWarning), from
the Python API, from the CLI (one ``error:`` line per failed file, the batch goes on) and
from msaf.process."""

from __future__ import annotations

import time
import warnings

import msaf
import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

import msaf_learned_ssm  # noqa: F401  (registers learned_ssm in MSAF)
from msaf_learned_ssm import Analyzer, AudioLoadError, ConfigError, ShortAudioWarning
from msaf_learned_ssm.cli import main
from msaf_learned_ssm.examples import synthesize_sections

from conftest import untrained_model

SR = 22050


@pytest.fixture(scope="module")
def analyzer():
    return Analyzer(untrained_model(attention_layers=1), "cpu")


@pytest.fixture(scope="module")
def music():
    """40 s of sections (ABAB) at 22.05 kHz."""
    return synthesize_sections("ABAB", 10.0)[0]


def _tone(seconds: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def _truncated(tmp_path, fmt: str, keep: float):
    if fmt.upper() not in sf.available_formats():
        pytest.skip(f"libsndfile {sf.__libsndfile_version__} cannot write {fmt} "
                    "(needs libsndfile >= 1.1 for mp3)")
    full = tmp_path / f"full.{fmt}"
    sf.write(full, _tone(10.0), SR)
    data = full.read_bytes()
    cut = tmp_path / f"cut{int(keep * 100)}.{fmt}"
    cut.write_bytes(data[:int(len(data) * keep)])
    return cut


def _bad_files(tmp_path) -> dict:
    """name -> path of a file that must give an AudioLoadError."""
    files = {"missing": tmp_path / "missing.wav"}
    (tmp_path / "folder.wav").mkdir()
    files["directory"] = tmp_path / "folder.wav"
    files["text"] = tmp_path / "notes.wav"
    files["text"].write_text("these are my notes, not audio\n" * 20)
    files["zero_bytes"] = tmp_path / "zero_bytes.flac"
    files["zero_bytes"].write_bytes(b"")
    files["zero_samples"] = tmp_path / "zero_samples.wav"
    sf.write(files["zero_samples"], np.zeros(0, np.float32), SR)  # a valid header, no data
    for bad in ("nan", "inf"):
        y = _tone(5.0)
        y[1000] = np.nan if bad == "nan" else -np.inf
        files[bad] = tmp_path / f"{bad}.wav"
        sf.write(files[bad], y, SR, subtype="FLOAT")
    return files


# ------------------------------------------------------------------ Analyzer.analyze


@pytest.mark.parametrize("case", ["missing", "directory", "text", "zero_bytes", "zero_samples",
                                  "nan", "inf"])
def test_bad_file_raises_audio_load_error(analyzer, tmp_path, case):
    path = _bad_files(tmp_path)[case]
    with pytest.raises(AudioLoadError) as info:
        analyzer.analyze(path)
    assert str(path) in str(info.value)
    expected = {"missing": "no such file", "directory": "directory", "text": "cannot decode",
                "zero_bytes": "empty", "zero_samples": "zero samples",
                "nan": "NaN or infinite", "inf": "NaN or infinite"}[case]
    assert expected in str(info.value)
    # No decoder's own message without context: the reason is ours, the file is named.
    assert "Traceback" not in str(info.value)


@pytest.mark.parametrize("fmt", ["mp3", "flac"])
@pytest.mark.parametrize("keep", [0.5, 0.02])
def test_truncated_file_gives_result_or_clear_error(analyzer, tmp_path, fmt, keep):
    path = _truncated(tmp_path, fmt, keep)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ShortAudioWarning)
            result = analyzer.analyze(path)
    except AudioLoadError as exc:
        # Decoders that stop at the damage (libsndfile's FLAC decoder: "lost sync").
        assert str(path) in str(exc) and "cannot decode" in str(exc)
    else:
        # Decoders that return what precedes the damage (mpg123 on a cut mp3).
        assert 0 < result.duration <= 10.0 + 0.1
        assert result.boundaries[0] == 0 and result.boundaries[-1] == result.duration


def test_silence_gives_one_segment_and_warning(analyzer, tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(30 * SR, np.float32), SR)
    with pytest.warns(ShortAudioWarning, match="silent"):
        result = analyzer.analyze(path)
    np.testing.assert_allclose(result.boundaries, [0.0, 30.0])


@pytest.mark.parametrize("seconds, why", [(0.001, "shorter than one patch"),
                                          (2.0, "shorter than one patch"),
                                          (8.0, "shorter than the novelty kernel")])
def test_short_audio_gives_one_segment_and_warning(analyzer, tmp_path, seconds, why):
    path = tmp_path / "short.wav"
    sf.write(path, _tone(seconds), SR)
    with pytest.warns(ShortAudioWarning, match=why):
        result = analyzer.analyze(path)
    np.testing.assert_allclose(result.boundaries, [0.0, round(seconds * SR) / SR])


def test_empty_array_is_a_config_error(analyzer):
    with pytest.raises(ConfigError, match="no samples"):
        analyzer.analyze_audio(np.zeros(0, np.float32))
    with pytest.raises(ConfigError, match="finite"):
        analyzer.analyze_audio(np.array([0.0, np.nan], np.float32))


def test_eight_channels_like_mono(analyzer, tmp_path, music):
    path = tmp_path / "eight.wav"
    sf.write(path, np.tile(music[:, None], (1, 8)), SR)
    mono = tmp_path / "mono.wav"
    sf.write(mono, music, SR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShortAudioWarning)
        result, reference = analyzer.analyze(path), analyzer.analyze(mono)
    np.testing.assert_allclose(result.boundaries, reference.boundaries, atol=1e-6)


@pytest.mark.parametrize("rate", [8000, 96000])
def test_other_sample_rates(analyzer, tmp_path, music, rate):
    import librosa

    path = tmp_path / f"r{rate}.wav"
    sf.write(path, librosa.resample(music, orig_sr=SR, target_sr=rate), rate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShortAudioWarning)
        result = analyzer.analyze(path)
    assert result.duration == pytest.approx(40.0, abs=1e-3)
    assert result.boundaries[0] == 0 and result.boundaries[-1] == result.duration
    assert np.all(np.isfinite(result.novelty))


def test_sixty_minute_file(analyzer, tmp_path, music):
    started = time.perf_counter()
    path = tmp_path / "hour.wav"
    n = 3600 * SR
    sf.write(path, np.tile(music, -(-n // len(music)))[:n], SR, subtype="PCM_16")
    result = analyzer.analyze(path)
    b = result.boundaries
    assert b[0] == 0 and b[-1] == pytest.approx(3600.0)
    assert np.all(np.diff(b) > 0) and np.all((b >= 0) & (b <= 3600.0))
    assert len(result.novelty) > 7000 and np.all(np.isfinite(result.novelty))
    assert time.perf_counter() - started < 120  # about 30 s on 2 busy cores


# ------------------------------------------------------------------ CLI


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def test_cli_batch_goes_on_and_reports_each_failure(tmp_path, model_path, music):
    good = tmp_path / "good.wav"
    sf.write(good, music, SR)
    bad = _bad_files(tmp_path)
    names = ["missing", "directory", "text", "zero_samples", "nan"]
    audio = [str(bad["missing"]), str(good), *(str(bad[n]) for n in names[1:])]
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["segment", *audio, "--model", str(model_path),
                                       "--device", "cpu", "-o", str(out), "--no-labels"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    errors = _error_lines(result.output)
    assert len(errors) == len(names)
    for name in names:
        assert sum(str(bad[name]) in line for line in errors) == 1, (name, errors)
    assert "Traceback" not in result.output
    assert (out / "good.jams").is_file()  # the good file of the batch was processed
    assert f"{good}\t0.000" in result.output
    assert result.output.rstrip().splitlines()[-1].startswith("segmented 1/6 files")
    assert "5 failed" in result.output.splitlines()[-1]


def test_cli_fail_fast_stops_at_first_failure(tmp_path, model_path, music):
    good = tmp_path / "good.wav"
    sf.write(good, music, SR)
    bad = _bad_files(tmp_path)
    audio = [str(bad["text"]), str(good), str(bad["nan"])]
    result = CliRunner().invoke(main, ["segment", *audio, "--model", str(model_path),
                                       "--device", "cpu", "--fail-fast", "--no-labels"])
    assert result.exit_code == 1
    errors = _error_lines(result.output)
    assert len(errors) == 1 and str(bad["text"]) in errors[0]
    assert str(good) + "\t" not in result.output  # stopped before the good file
    last = result.output.rstrip().splitlines()[-1]
    assert last.startswith("segmented 0/3 files") and "2 not processed" in last


def test_cli_single_good_file_exit_zero(tmp_path, model_path):
    path = tmp_path / "short.wav"
    sf.write(path, _tone(3.0), SR)
    out = tmp_path / "short.csv"
    result = CliRunner().invoke(main, ["segment", str(path), "--model", str(model_path),
                                       "--device", "cpu", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().splitlines()[1] == "0.000,3.000,A" or \
        out.read_text().splitlines()[1].startswith("0.000,3.000,")
    assert "segmented 1/1 files" in result.output


def test_cli_bad_model_is_one_error_line(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, _tone(3.0), SR)
    result = CliRunner().invoke(main, ["segment", str(path), "--model",
                                       str(tmp_path / "nope.pt"), "--device", "cpu"])
    assert result.exit_code == 2
    assert _error_lines(result.output) == [f"error: {tmp_path / 'nope.pt'}: no such "
                                           "checkpoint file"]


# ------------------------------------------------------------------ msaf.process


def _msaf_config(model_path, feature):
    cfg = msaf.io.get_configuration(feature, False, True, "learned_ssm", None)
    cfg["ssm_model"], cfg["ssm_device"], cfg["features"] = str(model_path), "cpu", None
    return cfg


def _msaf_single_file(path, model_path, feature):
    """msaf.process in single-file mode, frame-synchronous, boundaries from learned_ssm."""
    return msaf.process(str(path), feature=feature, framesync=True,
                        boundaries_id="learned_ssm", labels_id=None,
                        config=_msaf_config(model_path, feature))


@pytest.fixture
def msaf_cwd(tmp_path, monkeypatch):
    """MSAF's single-file mode caches features in ``./.features_msaf_tmp.json`` and reuses
    them for any audio file of the same *base name* and duration: run in a fresh folder so
    that no earlier run's features stand in for the file under test."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("case", ["text", "zero_samples", "nan"])
def test_msaf_process_bad_audio(msaf_cwd, model_path, case):
    path = _bad_files(msaf_cwd)[case]
    # With this plugin's feature, MSAF's decoding failures become our AudioLoadError.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(AudioLoadError) as info:
            _msaf_single_file(path, model_path, "learned_ssm")
    assert str(path) in str(info.value)


def test_msaf_process_bad_audio_msaf_features_is_msafs_error(msaf_cwd, model_path):
    """Documented limitation: with MSAF's own features (pcp), MSAF decodes the file and
    computes its features before this plugin's Segmenter runs, so the error is MSAF's
    (here audioread's NoBackendError); a missing file is MSAF's NoAudioFileError whatever
    the feature. This plugin does not patch MSAF."""
    tmp_path = msaf_cwd
    path = _bad_files(tmp_path)["text"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception) as info:
            _msaf_single_file(path, model_path, "pcp")
    assert not isinstance(info.value, AudioLoadError)
    with pytest.raises(msaf.exceptions.NoAudioFileError):
        _msaf_single_file(tmp_path / "missing.wav", model_path, "learned_ssm")


def test_segmenter_raises_audio_load_error(tmp_path, model_path):
    """The Segmenter itself (features already available) raises our error."""
    from msaf_learned_ssm.msaf_plugin import Segmenter

    path = _bad_files(tmp_path)["text"]
    segmenter = Segmenter.__new__(Segmenter)
    segmenter.audio_file = str(path)
    segmenter.config = _msaf_config(model_path, "learned_ssm")
    with pytest.raises(AudioLoadError, match="cannot decode"):
        segmenter._analysis()
