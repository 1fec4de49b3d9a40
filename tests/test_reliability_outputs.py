"""Reliability of outputs: CSV/JAMS from the CLI and checkpoints are written atomically (a
failed write leaves the old file intact and no temporary file), reference annotations are
never modified, and a corrupt feature-cache entry is detected and rebuilt.

(``msaf.eval`` leaving references untouched is checked in
``test_msaf_plugin.py::test_collection_mode_and_eval``.)"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from msaf_learned_ssm import ModelConfig
from msaf_learned_ssm.checkpoint import atomic_torch_save, load_model, save_model
from msaf_learned_ssm.cli import main
from msaf_learned_ssm.examples import synthesize_sections
from msaf_learned_ssm_training.corpus import FeatureCache

from conftest import untrained_model

SR = 22050


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "song.wav"
    sf.write(path, synthesize_sections("ABAB", 8.0)[0], SR)
    return path


def _segment(*args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CliRunner().invoke(main, ["segment", *map(str, args), "--device", "cpu"])


def _failing_replace(monkeypatch):
    """Make every os.replace fail, as a full disk or a kill between write and rename."""
    def replace(src, dst, *args, **kwargs):
        raise OSError(28, "No space left on device (simulated)")
    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("name", ["out.csv", "out.jams"])
def test_cli_output_written_atomically(tmp_path, monkeypatch, model_path, song, name):
    out = tmp_path / name
    first = _segment(song, "--model", model_path, "-o", out)
    assert first.exit_code == 0, first.output
    before = out.read_bytes()
    _failing_replace(monkeypatch)
    # The JAMS is an update of an existing estimation file (os.replace); a CSV is rewritten.
    second = _segment(song, "--model", model_path, "-o", out, "--no-labels", "--overwrite")
    assert second.exit_code == 1
    errors = [line for line in second.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(song) in errors[0] and "No space left" in errors[0]
    assert out.read_bytes() == before
    # No temporary file left (an estimation JAMS keeps its hidden lock file beside it).
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != f".{name}.lock") == [name]


def test_checkpoint_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    save_model(untrained_model(attention_layers=1), path)
    before = path.read_bytes()
    _failing_replace(monkeypatch)
    with pytest.raises(OSError, match="simulated"):
        save_model(untrained_model(attention_layers=0, seed=1), path)
    with pytest.raises(OSError, match="simulated"):
        atomic_torch_save({"x": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_model(path)[0].config.attention_layers == 1
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


@pytest.mark.parametrize("target", ["references/song.jams", "references/song.csv",
                                    "references"])
def test_cli_refuses_to_write_into_references(tmp_path, model_path, song, target):
    refs = tmp_path / "references"
    refs.mkdir()
    reference = refs / "song.jams"
    reference.write_text('{"human": "annotation"}')
    before = reference.read_bytes()
    result = _segment(song, "--model", model_path, "-o", tmp_path / target)
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "references" in errors[0] and "never modified" in errors[0]
    assert reference.read_bytes() == before
    assert [p.name for p in refs.iterdir()] == ["song.jams"]


def test_cli_creates_output_folder(tmp_path, model_path, song):
    other = tmp_path / "other.wav"
    other.write_bytes(song.read_bytes())
    result = _segment(song, other, "--model", model_path, "-o", tmp_path / "new" / "dir",
                      "--format", "csv")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "new" / "dir" / "song.csv").is_file()
    assert (tmp_path / "new" / "dir" / "other.csv").is_file()


# ------------------------------------------------------------------ feature cache


TINY = ModelConfig(attention_layers=1)


@pytest.fixture
def cache_and_entry(tmp_path, song):
    cache = FeatureCache(tmp_path / "cache", TINY)
    steps = cache.steps(song)[0]
    entry = cache.path_for(song)
    assert entry.is_file()
    return cache, entry, steps


def _corrupt_truncated(entry):
    data = entry.read_bytes()
    entry.write_bytes(data[:len(data) // 2])


def _corrupt_nan(entry):
    with np.load(entry) as data:
        steps, times, duration = data["steps"].copy(), data["step_times"], data["duration"]
    steps[0, 0] = np.nan
    with open(entry, "wb") as handle:
        np.savez(handle, steps=steps, step_times=times, duration=duration)


def _corrupt_shape(entry):
    with open(entry, "wb") as handle:
        np.savez(handle, steps=np.zeros((3, 4)), step_times=np.zeros(4), duration=1.0)


def _corrupt_empty(entry):
    entry.write_bytes(b"")


@pytest.mark.parametrize("corrupt", [_corrupt_truncated, _corrupt_nan, _corrupt_shape,
                                     _corrupt_empty])
def test_corrupt_cache_entry_rebuilt(cache_and_entry, song, corrupt):
    cache, entry, steps = cache_and_entry
    corrupt(entry)
    with pytest.warns(UserWarning, match="corrupt feature cache entry"):
        again = cache.steps(song)[0]
    np.testing.assert_array_equal(again, steps)
    # The entry was rewritten: the next read is clean and warns nothing.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(cache.steps(song)[0], steps)


def test_cache_write_failure_leaves_no_temp(tmp_path, monkeypatch, song):
    cache = FeatureCache(tmp_path / "cache", TINY)
    _failing_replace(monkeypatch)
    with pytest.raises(OSError, match="simulated"):
        cache.steps(song)
    assert list((tmp_path / "cache").iterdir()) == []
