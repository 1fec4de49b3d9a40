"""Device selection: "auto" takes CUDA when there is one, and the GPU code paths (moving the
model and tensors with ``.to(device)``) are exercised on the CPU here; CI has no GPU."""

from __future__ import annotations

import pytest
import torch

from msaf_learned_ssm import Analyzer, ConfigError
from msaf_learned_ssm.inference import resolve_device

from conftest import untrained_model


def test_auto_follows_cuda_availability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"


def test_cuda_requested_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu9")


def test_analyzer_puts_model_on_the_chosen_device(planted_track):
    analyzer = Analyzer(untrained_model(), torch.device("cpu"))
    assert next(analyzer.model.parameters()).device.type == "cpu"
    result = analyzer.analyze(planted_track[0])
    assert result.novelty.dtype.kind == "f" and result.embeddings.shape[1] == 128


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu(planted_track):
    cpu = Analyzer(untrained_model(), "cpu").analyze(planted_track[0])
    gpu = Analyzer(untrained_model(), "cuda").analyze(planted_track[0])
    assert abs(cpu.novelty - gpu.novelty).max() < 1e-3
