"""Reliability, round 3 (issue 23, items 17-23): no lock files left behind, messages that
say what is wrong, config errors naming the key, one stdout line per file, no option or
problem passed over in silence, checked Python API inputs, warnings scoped to their call."""

from __future__ import annotations

import multiprocessing
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from msaf_learned_ssm_jams.fileio import file_lock
from msaf_learned_ssm_jams.io import write_estimation_jams

SR = 22050


def _cli(*args):
    from msaf_learned_ssm.cli import main
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CliRunner().invoke(main, [*map(str, args)])


# --- 17: no lock file left beside JAMS outputs ---------------------------------------------

def test_17_estimation_jams_leaves_no_lock_file(tmp_path):
    out = tmp_path / "song.jams"
    write_estimation_jams(out, [0.0, 5.0, 10.0], duration=10.0)
    write_estimation_jams(out, [0.0, 4.0, 10.0], duration=10.0, algo_id="other")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.jams"]


def _hold_and_append(path, log, n):
    for i in range(n):
        with file_lock(path):
            with open(log, "a") as handle:
                handle.write(f"{os.getpid()} start\n")
            with open(log, "a") as handle:
                handle.write(f"{os.getpid()} end\n")


def test_17_file_lock_still_excludes_after_removal(tmp_path):
    """Removing the lock file on release keeps the lock exclusive: holds never overlap."""
    target, log = tmp_path / "x.jams", tmp_path / "log"
    procs = [multiprocessing.get_context("fork").Process(target=_hold_and_append,
                                                         args=(target, log, 40))
             for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = log.read_text().splitlines()
    assert len(lines) == 240
    for start, end in zip(lines[::2], lines[1::2]):
        assert start.split()[0] == end.split()[0] and start.endswith("start")
    assert not (tmp_path / ".x.jams.lock").exists()


def test_17_file_lock_nonblocking(tmp_path):
    with file_lock(tmp_path / "y"):
        ctx = multiprocessing.get_context("fork")
        q = ctx.Queue()

        def probe():
            try:
                with file_lock(tmp_path / "y", blocking=False):
                    q.put("took")
            except BlockingIOError:
                q.put("busy")
        p = ctx.Process(target=probe)
        p.start()
        p.join(30)
        assert q.get(timeout=5) == "busy"


# --- 19: MSAF config types name the key -----------------------------------------------------

@pytest.mark.parametrize("key,value", [
    ("ssm_peak_threshold", "high"), ("ssm_model", 3), ("ssm_peak_min_distance_sec", 1e308),
    ("ssm_fine_peak_threshold", float("nan")), ("ssm_sync", "bars"), ("ssm_device", None),
    ("ssm_label_threshold", "low"), ("ssm_label_similarity", 1), ("ssm_peak_threshold", True),
])
def test_19_msaf_config_type_errors_name_the_key(key, value):
    from msaf_learned_ssm import msaf_plugin
    from msaf_learned_ssm.errors import ConfigError

    cfg = dict(msaf_plugin.config, **{key: value})
    with pytest.raises(ConfigError, match=f"'{key}' must be") as info:
        msaf_plugin.check_config(cfg)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=f"'{key}' must be"):
        msaf_plugin.recorded_settings(cfg)


def test_19_valid_msaf_config_values_pass():
    from msaf_learned_ssm import msaf_plugin

    msaf_plugin.check_config(dict(msaf_plugin.config))
    msaf_plugin.check_config(dict(msaf_plugin.config, ssm_peak_threshold=2, ssm_sync="bar",
                                  ssm_label_threshold="auto", ssm_model=Path("x.pt")))


# --- 22: Python API input checks -------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_analyzer():
    from msaf_learned_ssm import Analyzer, ModelConfig, SSMNet
    import torch

    torch.manual_seed(0)
    return Analyzer(SSMNet(ModelConfig(attention_layers=1)), device="cpu")


@pytest.mark.parametrize("sr", [0, -22050, 22050.5, float("nan"), True, "22050", 10**9])
def test_22_analyze_audio_refuses_bad_sample_rates(tiny_analyzer, sr):
    from msaf_learned_ssm.errors import ConfigError

    y = np.zeros(SR * 2, dtype=np.float32)
    with pytest.raises(ConfigError, match="sample_rate must be a whole number of Hz"):
        tiny_analyzer.analyze_audio(y, sr)


def test_22_int16_audio_is_scaled_as_soundfile_reads_it(tiny_analyzer, tmp_path):
    import soundfile as sf
    from msaf_learned_ssm.audio import as_float_signal
    from msaf_learned_ssm.examples import synthesize_sections

    y = synthesize_sections("ABCA", 10.0, SR, seed=1)[0] * 0.5
    pcm = np.round(np.clip(y, -1, 1 - 2 ** -15) * 32767).astype(np.int16)
    sf.write(tmp_path / "x.wav", pcm, SR, subtype="PCM_16")
    read = sf.read(tmp_path / "x.wav", dtype="float32")[0]
    np.testing.assert_array_equal(as_float_signal(pcm), read)
    a = tiny_analyzer.analyze_audio(pcm, SR)
    b = tiny_analyzer.analyze(tmp_path / "x.wav")
    np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-5)
    np.testing.assert_allclose(a.boundaries, b.boundaries)
    np.testing.assert_allclose(as_float_signal(np.array([0, 128, 255], np.uint8)),
                               [-1.0, 0.0, 127 / 128])


@pytest.mark.filterwarnings("ignore::msaf_learned_ssm.ShortAudioWarning")
def test_22_bad_arrays_and_bytes_paths(tiny_analyzer, tmp_path):
    import soundfile as sf
    from msaf_learned_ssm.errors import ConfigError

    with pytest.raises(ConfigError, match="float or integer PCM"):
        tiny_analyzer.analyze_audio(np.zeros(SR, dtype=complex), SR)
    y = (np.sin(np.linspace(0, 3000, SR * 20)) * 0.3).astype(np.float32)
    sf.write(tmp_path / "b.wav", y, SR)
    a = tiny_analyzer.analyze(os.fsencode(tmp_path / "b.wav"))
    assert a.source == str(tmp_path / "b.wav")
    with pytest.raises(ConfigError, match="str, bytes or os.PathLike, got int"):
        tiny_analyzer.analyze(3)


# --- 18: messages that say what is wrong -----------------------------------------------------

def test_18_audio_messages_say_what_the_path_is(tmp_path):
    from msaf_learned_ssm.audio import load_audio
    from msaf_learned_ssm.errors import AudioLoadError

    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.wav"
    loop.symlink_to(tmp_path / "loop2.wav")
    (tmp_path / "loop2.wav").symlink_to(loop)
    broken = tmp_path / "broken.wav"
    broken.symlink_to(tmp_path / "gone.wav")
    cases = {fifo: "is a FIFO", Path("/dev/zero"): "is a character device",
             loop: "symbolic link loop", broken: "broken symbolic link",
             tmp_path / "missing.wav": "no such file"}
    for path, expected in cases.items():
        with pytest.raises(AudioLoadError) as info:
            load_audio(path)
        assert str(info.value).startswith(f"{path}: ") and expected in str(info.value)


def test_18_model_config_as_a_string():
    from msaf_learned_ssm import ModelConfig
    from msaf_learned_ssm.errors import ConfigError

    with pytest.raises(ConfigError, match="must be a dictionary of settings, got str"):
        ModelConfig.from_dict("ops")


@pytest.mark.parametrize("extra,expected", [
    ({"sync": "bars"}, "invalid boundary placement in the model file"),
    ({"peaks": {"threshold": -1.0}}, "invalid peak settings in the model file"),
    ({"peaks": "high"}, "invalid peak settings in the model file"),
])
def test_18_model_file_settings_errors_name_the_file(tmp_path, extra, expected):
    import torch
    from msaf_learned_ssm import Analyzer, ModelConfig, SSMNet, msaf_plugin
    from msaf_learned_ssm.checkpoint import save_model
    from msaf_learned_ssm.errors import CheckpointError

    torch.manual_seed(0)
    path = tmp_path / "sub" / "model.pt"
    path.parent.mkdir()
    save_model(SSMNet(ModelConfig(attention_layers=1)), path, **extra)
    with pytest.raises(CheckpointError, match=f"^{path}: {expected}"):
        Analyzer(path, device="cpu")
    with pytest.raises(CheckpointError, match=f"^{path}: {expected}"):
        msaf_plugin.recorded_settings(dict(msaf_plugin.config, ssm_model=str(path)))


# --- 21: options and problems never passed over in silence -------------------------------------

def _tone(path, seconds, sr=SR):
    import soundfile as sf
    from msaf_learned_ssm.examples import synthesize_sections

    y = synthesize_sections("AB", seconds / 2, sr, seed=2)[0] * 0.5
    sf.write(path, y, sr, subtype="PCM_16")
    return path


def test_21_format_must_agree_with_the_output_name(tmp_path):
    wav = _tone(tmp_path / "a.wav", 2.0)
    result = _cli("segment", wav, "-o", tmp_path / "x.jams", "--format", "csv")
    assert result.exit_code == 2
    assert "-o " in result.output and "--format csv" in result.output
    assert not (tmp_path / "x.jams").exists()


def test_21_reference_without_plot_is_refused(tmp_path):
    from msaf_learned_ssm_jams.segments import segments_to_jams

    wav = _tone(tmp_path / "a.wav", 2.0)
    ref = tmp_path / "ref.jams"
    segments_to_jams(np.array([[0.0, 1.0], [1.0, 2.0]]), ["a", "b"], duration=2.0).save(str(ref))
    result = _cli("segment", wav, "-o", tmp_path / "x.csv", "--reference", ref)
    assert result.exit_code == 2 and "--reference is drawn on the plot" in result.output
    assert not (tmp_path / "x.csv").exists()


def test_21_reference_of_another_duration_is_not_plotted(tmp_path):
    from msaf_learned_ssm.errors import AnnotationError
    from msaf_learned_ssm_jams.segments import check_reference_fits, segments_to_jams

    ref = tmp_path / "ref.jams"
    segments_to_jams(np.array([[0.0, 14.0], [14.0, 28.0]]), ["a", "b"],
                     duration=28.0).save(str(ref))
    with pytest.raises(AnnotationError, match="says the audio lasts 28.0 s but song.wav "
                                              "lasts 45.0 s"):
        check_reference_fits(ref, [[0.0, 14.0], [14.0, 28.0]], 45.0, "x/song.wav")
    with pytest.raises(AnnotationError, match="runs to 28.0 s but song.wav lasts 20.0 s"):
        check_reference_fits(ref, [[0.0, 14.0], [14.0, 28.0]], 20.0, "x/song.wav")
    check_reference_fits(ref, [[0.0, 14.0], [14.0, 28.0]], 28.2, "x/song.wav")
    # Through the command line: one error line naming the reference, no plot written.
    wav = _tone(tmp_path / "a.wav", 16.0)
    result = _cli("segment", wav, "--plot", tmp_path / "p.png", "--reference", ref)
    assert result.exit_code == 1
    assert f"{ref}: the reference runs to 28.0 s but a.wav lasts 16.0 s" in result.output
    assert not (tmp_path / "p.png").exists()


def test_21_truncated_wav_warns(tmp_path):
    from msaf_learned_ssm.audio import TruncatedAudioWarning, load_audio

    wav = _tone(tmp_path / "t.wav", 4.0)
    os.truncate(wav, 44 + 2 * SR * 2)
    with pytest.warns(TruncatedAudioWarning, match=r"t.wav: truncated file: its header "
                                                   r"announces 4.0 s of audio, it holds 2.0 s"):
        y = load_audio(wav)
    assert len(y) == 2 * SR
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_audio(_tone(tmp_path / "ok.wav", 4.0))  # a whole file: no warning


# --- 20: one stdout line per file, whatever its name ------------------------------------------

def test_20_control_characters_in_file_names_are_escaped(tmp_path):
    from msaf_learned_ssm.cli import one_line

    odd = _tone(tmp_path / "a\nb\tc\\d.wav", 2.0)
    plain = _tone(tmp_path / "plain.wav", 2.0)
    result = _cli("segment", odd, plain, "--device", "cpu")  # click >= 8.2: stdout apart
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].split("\t")[0] == f"{tmp_path}/a\\nb\\tc\\\\d.wav"
    assert lines[1].split("\t")[0] == str(plain)
    assert one_line("x\x00y\r") == "x\\x00y\\r"


# --- 23: warnings scoped to the calls that cause them ------------------------------------------

def test_23_jams_validation_gives_no_jsonschema_deprecation(tmp_path):
    from msaf_learned_ssm_jams.segments import read_segments, segments_to_jams

    ref = tmp_path / "r.jams"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        segments_to_jams(np.array([[0.0, 1.0], [1.0, 2.0]]), ["a", "b"],
                         duration=2.0).save(str(ref))
        caught.clear()  # jams' own save is not ours
        read_segments(ref)
        write_estimation_jams(tmp_path / "e.jams", [0.0, 1.0, 2.0], duration=2.0)
        warnings.warn("another warning", DeprecationWarning)  # others still pass
    messages = [str(w.message) for w in caught]
    assert messages == ["another warning"], messages


def test_23_corrupt_cache_entry_closes_its_file(tmp_path):
    import gc

    from msaf_learned_ssm import ModelConfig
    from msaf_learned_ssm_training.corpus import FeatureCache

    entry = tmp_path / "bad.npz"
    entry.write_bytes(b"PK\x03\x04 not a zip at all")
    cache = FeatureCache(tmp_path, ModelConfig())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cache._read(entry) is None
        gc.collect()
    kinds = [(w.category.__name__, str(w.message)) for w in caught]
    assert not [k for k in kinds if k[0] == "ResourceWarning"], kinds
    assert len(kinds) == 1 and "corrupt feature cache entry" in kinds[0][1]


def test_23_evaluate_without_estimated_boundaries_is_quiet():
    import torch
    from msaf_learned_ssm import ModelConfig, PeakConfig, SSMNet
    from msaf_learned_ssm_training.trainer import Example, evaluate

    torch.manual_seed(0)
    model = SSMNet(ModelConfig(attention_layers=1))
    cfg = model.config
    n = 10  # shorter than the novelty kernel: no inner boundary is estimated
    ex = Example("t", np.random.default_rng(0).standard_normal(
        (n, cfg.n_mels, 2 * cfg.patch_half_steps + 1)).astype(np.float32),
        np.arange(n) * 0.5 + 0.25, np.zeros(n, int), np.array([0.0, 2.0, 5.0]), 5.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = evaluate(model, [ex], PeakConfig(), torch.device("cpu"))
        warnings.warn("Estimated intervals are empty.")  # the filter ends with the call
    assert scores["HR3F"] == 0.0
    assert [str(w.message) for w in caught] == ["Estimated intervals are empty."]
