"""Shared fixtures: synthetic audio the tests make themselves, and ../shared/data."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

PLANTED_LABELS = "ABCDBADC"
PLANTED_SECTION_SEC = 20.0


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests using it skip when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not present: this test needs the shared reference data "
                    "(POP909, Harmonix, reference audio, author's checkpoints)")
    return SHARED


def untrained_model(attention_layers: int = 0, seed: int = 0):
    """A checkerboard-initialised, untrained model (seeded).

    An untrained head's 1x1 combination is random and may flip the sign of the kernels'
    response; it is set to a positive average (weight 5, bias 0) so that the novelty
    follows the checkerboard kernels.
    """
    from msaf_learned_ssm import ModelConfig, SSMNet

    torch.manual_seed(seed)
    model = SSMNet(ModelConfig(attention_layers=attention_layers)).eval()
    with torch.no_grad():
        model.novelty.combine.weight.fill_(5.0)
        model.novelty.combine.bias.zero_()
    return model


@pytest.fixture(scope="session")
def planted_track(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A 160 s WAV of 8 sections of distinct timbre, and its planted boundaries (s)."""
    from msaf_learned_ssm.examples import synthesize_sections

    y, boundaries = synthesize_sections(PLANTED_LABELS, PLANTED_SECTION_SEC)
    path = tmp_path_factory.mktemp("audio") / "planted.wav"
    sf.write(path, y, 22050)
    return path, boundaries


@pytest.fixture(scope="session")
def untrained_model_path(tmp_path_factory) -> Path:
    """The untrained model above saved as a checkpoint file."""
    from msaf_learned_ssm.checkpoint import save_model

    path = tmp_path_factory.mktemp("models") / "untrained.pt"
    save_model(untrained_model(), path)
    return path


@pytest.fixture(scope="session")
def model_path(tmp_path_factory) -> Path:
    """A small untrained model (1 attention layer) saved as a checkpoint file."""
    from msaf_learned_ssm.checkpoint import save_model

    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_model(untrained_model(attention_layers=1), path)
    return path


def hits(estimated, reference, window: float = 1.5) -> int:
    """Number of reference boundaries with an estimate within ``window`` seconds."""
    estimated = np.asarray(estimated)
    return int(sum(np.any(np.abs(estimated - r) <= window) for r in reference))


warnings.filterwarnings("ignore", category=DeprecationWarning)
