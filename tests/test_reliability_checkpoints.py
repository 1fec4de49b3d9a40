"""Reliability of model files: every bad checkpoint gives a CheckpointError that names the
file and says what is wrong, and a checkpoint that would run code is refused without
running it."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from msaf_learned_ssm import Analyzer, CheckpointError
from msaf_learned_ssm.checkpoint import FORMAT_VERSION, checkpoint_dict, load_model, save_model
from msaf_learned_ssm.cli import main

from conftest import ROOT, untrained_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_model(untrained_model(attention_layers=1), path)
    return path


def _load_error(path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_missing(tmp_path):
    assert "no such checkpoint" in _load_error(tmp_path / "nope.pt")


def test_directory(tmp_path):
    assert "is a directory" in _load_error(tmp_path)


@pytest.mark.parametrize("keep", [0.999, 0.5, 0.01])
def test_truncated(tmp_path, tiny, keep):
    data = tiny.read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[:int(len(data) * keep)])
    message = _load_error(path)
    assert "corrupt, truncated" in message
    assert len(message) < 400  # torch's paragraph of advice is cut to its first sentence


def test_not_a_checkpoint(tmp_path):
    text = tmp_path / "readme.pt"
    text.write_text("hello, this is text")  # torch.load raises KeyError on it
    assert "not a PyTorch checkpoint file" in _load_error(text)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    assert "expected a dictionary" in _load_error(tmp_path / "list.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    assert "not an SSM-Net checkpoint" in _load_error(tmp_path / "other.pt")
    data = checkpoint_dict(untrained_model(1))
    data["state_dict"] = {"a": 1}
    torch.save(data, tmp_path / "plain.pt")
    assert "not a dictionary of tensors" in _load_error(tmp_path / "plain.pt")


def test_config_claims_another_architecture(tmp_path):
    data = checkpoint_dict(untrained_model(attention_layers=1))
    data["config"]["attention_layers"] = 3  # the weights have one layer
    torch.save(data, tmp_path / "claims3.pt")
    message = _load_error(tmp_path / "claims3.pt")
    assert "do not fit the architecture" in message
    assert re.search(r"missing \d+ tensors \(e\.g\. encoder\.attention\.1\.", message)


def test_wrong_shapes(tmp_path):
    data = checkpoint_dict(untrained_model(attention_layers=1))
    data["state_dict"]["novelty.kernels.weight"] = torch.zeros(5, 1, 1, 7, 7)
    torch.save(data, tmp_path / "shapes.pt")
    message = _load_error(tmp_path / "shapes.pt")
    assert "shape differences: novelty.kernels.weight: expected" in message
    assert "found (5, 1, 1, 7, 7)" in message


def test_invalid_config(tmp_path):
    data = checkpoint_dict(untrained_model(attention_layers=1))
    data["config"]["n_mels"] = -3
    torch.save(data, tmp_path / "cfg.pt")
    assert "invalid model config" in _load_error(tmp_path / "cfg.pt")


def test_newer_format_version(tmp_path):
    data = checkpoint_dict(untrained_model(attention_layers=1))
    data["format_version"] = FORMAT_VERSION + 1
    torch.save(data, tmp_path / "future.pt")
    message = _load_error(tmp_path / "future.pt")
    assert f"version {FORMAT_VERSION + 1} is newer" in message and "upgrade" in message


class _Payload:
    """Unpickling this object calls os.system (what a malicious checkpoint does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_malicious_pickle_refused_and_not_run(tmp_path, writer):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    payload = {"format_version": 1, "config": {}, "state_dict": {}, "x": _Payload(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as handle:
            pickle.dump(payload, handle)
    message = _load_error(path)
    assert not marker.exists(), "loading the checkpoint ran its code"
    assert "refused to load" in message and "could run code" in message
    # torch's advice to retry with weights_only=False is not passed on to users.
    assert "weights_only" not in message
    # The CLI refuses it too, with one error line and no traceback.
    result = CliRunner().invoke(main, ["segment", str(tmp_path / "x.wav"), "--model",
                                       str(path), "--device", "cpu"])
    assert result.exit_code == 2 and "refused to load" in result.output
    assert not marker.exists()


def test_analyzer_raises_checkpoint_error(tmp_path, tiny):
    data = tiny.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[:100])
    with pytest.raises(CheckpointError, match="cut.pt"):
        Analyzer(tmp_path / "cut.pt", "cpu")


def test_torch_load_always_weights_only():
    """Every torch.load call in the code base passes weights_only=True."""
    sources = [p for folder in ("msaf_learned_ssm", "training", "msaf_learned_ssm_jams", "bench",
                                "examples")
               for p in (ROOT / folder).rglob("*.py")]
    assert sources
    calls = 0
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"torch\.load\(", text):
            # The call's arguments: up to the matching closing parenthesis.
            depth, end = 0, match.end() - 1
            for end in range(match.end() - 1, len(text)):
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                if depth == 0:
                    break
            args = text[match.end():end]
            line = text[:match.start()].count("\n") + 1
            if text[:match.start()].rsplit("\n", 1)[-1].lstrip().startswith("#") \
                    or "``" in text[match.start() - 2:match.start()]:
                continue  # a comment or a docstring mentioning it
            calls += 1
            assert re.search(r"weights_only\s*=\s*True", args), f"{path}:{line}: {args}"
    assert calls >= 1
