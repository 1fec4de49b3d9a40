"""Reliability of segmentation outputs and models (issue 13, items 3-6, 8, 13-16): outputs
never collide or overwrite silently, each names its model, stale MSAF features and
non-finite models are refused, and misuse is a one-line error."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import sys
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from msaf_learned_ssm import ModelConfig
from msaf_learned_ssm.checkpoint import checkpoint_dict, load_model, read_checkpoint, save_model
from msaf_learned_ssm.cli import main
from msaf_learned_ssm.errors import AnnotationError, CheckpointError, ConfigError
from msaf_learned_ssm.examples import synthesize_sections
from msaf_learned_ssm.fileio import atomic_write_text
from msaf_learned_ssm_jams.io import write_estimation_jams

from conftest import untrained_model

SR = 22050


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    root = tmp_path_factory.mktemp("songs")
    paths = {}
    for name, form in (("a/song.wav", "ABAB"), ("b/song.wav", "AABB"), ("a/song.ogg", "ABBA")):
        path = root / name
        path.parent.mkdir(exist_ok=True)
        sf.write(path, synthesize_sections(form, 8.0)[0], SR)
        paths[name] = path
    return paths


def _segment(*args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CliRunner().invoke(main, ["segment", *map(str, args), "--device", "cpu"])


def test_item3_colliding_outputs_are_refused_before_any_work(songs, model_path, tmp_path):
    out = tmp_path / "outc"
    result = _segment(songs["a/song.wav"], songs["a/song.ogg"], songs["b/song.wav"],
                      "--model", model_path, "-o", out, "--format", "csv")
    assert result.exit_code == 2 and "would both write" in result.output
    assert not out.exists()  # nothing was written


def test_item4_jams_names_the_model_and_keeps_both(songs, model_path, tmp_path):
    other = tmp_path / "other.pt"
    save_model(untrained_model(attention_layers=1, seed=5), other)
    out = tmp_path / "est.jams"
    for model in (model_path, other, model_path):
        assert _segment(songs["a/song.wav"], "--model", model, "-o", out).exit_code == 0
    every = json.loads(out.read_text())["annotations"]
    anns = [a for a in every if a["namespace"] == "segment_open"]
    # Rerunning the first model replaced its own annotations only (segments, and the beats
    # its labels were synced to).
    assert len(anns) == 2
    assert sorted(a["namespace"] for a in every) == ["beat"] * 2 + ["segment_open"] * 2
    names = {a["sandbox"]["ssm_model"] for a in anns}
    hashes = {a["sandbox"]["ssm_model_sha256"] for a in anns}
    assert names == {"tiny.pt", "other.pt"} and len(hashes) == 2 and None not in hashes


def test_item5_stale_msaf_features_are_refused(songs, untrained_model_path, tmp_path,
                                               monkeypatch):
    import msaf

    import msaf_learned_ssm  # noqa: F401

    short, long_ = tmp_path / "a" / "song.wav", tmp_path / "b" / "song.wav"
    for path, seconds in ((short, 30), (long_, 60)):
        path.parent.mkdir()
        sf.write(path, synthesize_sections("AB", seconds / 2)[0], SR)
    monkeypatch.chdir(tmp_path)
    config = msaf.io.get_configuration("learned_ssm", None, "learned_ssm", "learned_ssm",
                                       "learned_ssm")
    config["ssm_model"] = str(untrained_model_path)
    config["ssm_device"] = "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        msaf.process(str(short), boundaries_id="learned_ssm", framesync=True, config=config)
        # The features file records the audio's content hash (issue 23, item 2): the
        # other file of the same name gets features of its own, computed again.
        times, _ = msaf.process(str(long_), boundaries_id="learned_ssm", framesync=True,
                                config=config)
        assert times[-1] == pytest.approx(60.0, abs=0.1)
        # A features file that cannot be tied to its audio (no hash, its audio gone) and
        # that describes another length is still refused, never mapped onto this audio.
        msaf.process(str(short), boundaries_id="learned_ssm", framesync=True, config=config)
        features = tmp_path / msaf.config.features_tmp_file
        data = json.loads(features.read_text())
        del data["globals"]["audio_sha256"]
        data["globals"]["audio_file"] = str(tmp_path / "gone" / "song.wav")
        features.write_text(json.dumps(data))
        with pytest.raises(Exception, match="reused the features of another file"):
            msaf.process(str(long_), boundaries_id="learned_ssm", framesync=True,
                         config=config)


def _write_slowly(args):
    path, label, delay = args
    import msaf_learned_ssm_jams.io as io_module

    original = io_module.save_jams_atomic

    def slow_save(*a, **k):
        import time

        time.sleep(delay)  # widen the read-modify-write window
        return original(*a, **k)

    io_module.save_jams_atomic = slow_save
    write_estimation_jams(path, [0.0, 5.0, 10.0], duration=10.0, config={"ssm_model": label})


def test_item6_concurrent_writers_keep_both_annotations(tmp_path):
    path = tmp_path / "est.jams"
    ctx = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
    with ctx.Pool(2) as pool:
        pool.map(_write_slowly, [(path, "first", 0.5), (path, "second", 0.5)])
    models = {a["sandbox"]["ssm_model"] for a in json.loads(path.read_text())["annotations"]}
    assert models == {"first", "second"}


def test_item8_non_finite_weights_are_refused(tmp_path):
    model = untrained_model()
    with torch.no_grad():
        model.novelty.combine.weight.fill_(float("nan"))
    path = tmp_path / "nan.pt"
    torch.save(checkpoint_dict(model), path)
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_model(path)


@pytest.mark.parametrize("changes", [{"kernel_half_sec": 1500.0}, {"attention_ff": 1_000_000},
                                     {"kernel_half_sec": 1e9}])
def test_item13_crafted_configs_are_refused_before_allocating(tmp_path, changes):
    data = checkpoint_dict(untrained_model())
    data["config"] = {**data["config"], **changes}
    path = tmp_path / "crafted.pt"
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="largest supported"):
        load_model(path)
    with pytest.raises(ConfigError):
        ModelConfig(**changes)


@pytest.mark.parametrize("flag,name", [("-o", "x.png"), ("-o", "result.txt"),
                                       ("--plot", "y.jams")])
def test_item14_suffixes_must_match_the_format(songs, model_path, tmp_path, flag, name):
    result = _segment(songs["a/song.wav"], "--model", model_path, flag, tmp_path / name)
    assert result.exit_code == 2 and "must end in" in result.output
    assert not (tmp_path / name).exists()


def test_item14_existing_csv_needs_overwrite_and_keeps_its_mode(songs, model_path, tmp_path):
    out = tmp_path / "seg.csv"
    atomic_write_text(out, "old\n")
    out.chmod(0o600)
    result = _segment(songs["a/song.wav"], "--model", model_path, "-o", out)
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert out.read_text() == "old\n"
    assert _segment(songs["a/song.wav"], "--model", model_path, "-o", out,
                    "--overwrite").exit_code == 0
    assert out.read_text().startswith("segment_start_time_sec")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_item15_plotting_leaves_the_backend_and_warning_filters_alone(songs, model_path,
                                                                      tmp_path):
    import matplotlib

    from msaf_learned_ssm.inference import Analyzer
    from msaf_learned_ssm.plotting import plot_analysis

    before_backend, before_filters = matplotlib.get_backend(), list(warnings.filters)
    result = Analyzer(model_path, "cpu").analyze(songs["a/song.wav"])
    plot_analysis(result, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert matplotlib.get_backend() == before_backend and warnings.filters == before_filters
    assert not any("padding='same'" in str(f[1]) for f in warnings.filters if f[1])


def test_item15_analyzer_leaves_the_callers_model_alone():
    from msaf_learned_ssm.inference import Analyzer

    model = untrained_model().train()
    chunk = model.encoder.conv_chunk
    weight = next(model.encoder.conv.parameters())
    analyzer = Analyzer(model, "cpu")
    assert model.training and model.encoder.conv_chunk == chunk
    assert weight.is_contiguous()  # not switched to channels-last
    assert not analyzer.model.training and analyzer.model is not model


def test_item16_stale_temporary_files_are_cleaned(tmp_path):
    target = tmp_path / "out.txt"
    dead = tmp_path / f".out.txt.{2 ** 22 + 12345}.abcd.tmp"  # a pid that cannot exist
    dead.write_text("left by a killed writer")
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and not dead.exists()


def test_item16_random_bytes_are_not_called_code(tmp_path):
    path = tmp_path / "random.pt"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    assert "not a PyTorch checkpoint" in str(info.value) and "run code" not in str(info.value)


@pytest.mark.parametrize("text,match", [("0.0\t1e308\tA\n", "beyond any recording"),
                                        ("0.0 -1.0 A\n", "negative"),
                                        ("5.0 2.0 A\n", "ends")])
def test_item16_lab_times_are_checked_per_line(tmp_path, text, match):
    from msaf_learned_ssm_jams.lab import lab_to_jams

    path = tmp_path / "x.lab"
    path.write_text(text)
    with pytest.raises(AnnotationError, match=match) as info:
        lab_to_jams(path)
    assert "x.lab:1" in str(info.value) and "duration" not in str(info.value)


def test_item16_unterminated_csv_quote(tmp_path):
    from msaf_learned_ssm_jams.lab import csv_to_jams

    path = tmp_path / "x.csv"
    path.write_text('0.0,5.0,"verse\n5.0,9.0,chorus\n')
    with pytest.raises(AnnotationError, match="unterminated quote"):
        csv_to_jams(path)


def test_item16_failed_file_leaves_no_output(songs, model_path, tmp_path, monkeypatch):
    import msaf_learned_ssm.result_files as result_files

    out, plot = tmp_path / "seg.jams", tmp_path / "seg.png"
    real_open = result_files.atomic_open

    def failing_plot(path, *args, **kwargs):
        # The plot's write fails after the JAMS was written (an unusable plot folder is
        # refused before any work since issue 23, item 14: fail at the write itself).
        if str(path).endswith(".png"):
            raise OSError(28, "No space left on device (simulated)")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(result_files, "atomic_open", failing_plot)
    result = _segment(songs["a/song.wav"], "--model", model_path, "-o", out, "--plot", plot)
    assert result.exit_code == 1 and "error:" in result.output
    assert not out.exists() and not plot.exists()  # the JAMS written first was undone


def test_named_models_load_by_name_with_their_own_peaks():
    from msaf_learned_ssm.inference import Analyzer
    from msaf_learned_ssm.model_files import MODELS_DIR

    if not (MODELS_DIR / "author-nbatt3.pt").is_file():
        pytest.skip("named author models not shipped in this installation")
    analyzer = Analyzer("author-nbatt3", "cpu")
    assert analyzer.identity["name"] == "author-nbatt3"
    assert analyzer.peaks.to_dict() == {"mean_half_sec": 10.0, "min_distance_sec": 7.0,
                                        "threshold": 1.35}
    assert analyzer.model.config.attention_layers == 3
    assert os.path.getsize(MODELS_DIR / "LICENSE.author-models") > 20000
