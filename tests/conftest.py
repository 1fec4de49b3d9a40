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


def write_click_track_corpus(root: Path, n: int = 3, seconds: float = 24.0) -> Path:
    """Click tracks (accent every 4 beats, 80-140 BPM, a little noise) in MSAF layout with
    beat (bar positions) and two-segment references; returns ``root``."""
    import jams
    from msaf_learned_ssm_jams.beats import beats_to_annotation
    from msaf_learned_ssm_jams.segments import segments_to_jams

    sr = 22050
    (root / "audio").mkdir(parents=True)
    (root / "references").mkdir()
    rng = np.random.default_rng(0)
    t_click = np.arange(0, 0.03, 1 / sr)
    for i in range(n):
        period = 60 / rng.uniform(80, 140)
        beats = np.arange(0.5, seconds - 0.5, period)
        y = 0.01 * rng.standard_normal(int(seconds * sr)).astype(np.float32)
        for k, t in enumerate(beats):
            a = 1.0 if k % 4 == 0 else 0.4
            click = a * np.sin(2 * np.pi * 800 * t_click) * np.exp(-t_click * 100)
            y[int(t * sr): int(t * sr) + len(click)] += click.astype(np.float32)
        sf.write(root / "audio" / f"t{i}.wav", y, sr)
        jam = jams.JAMS()
        jam.file_metadata.duration = seconds
        segments_to_jams(np.array([[0, seconds / 2], [seconds / 2, seconds]]), ["A", "B"],
                         seconds, jam=jam)
        jam.annotations.append(beats_to_annotation(beats, np.arange(len(beats)) % 4 + 1,
                                                   seconds, "clicks"))
        jam.save(str(root / "references" / f"t{i}.jams"))
    return root


def load_bench(name: str):
    """``bench/NAME.py`` imported as module ``bench_NAME`` (registered in ``sys.modules``:
    dataclasses look their module up there; ``bench/`` on the path for its own imports)."""
    import importlib.util
    import sys

    if str(ROOT / "bench") not in sys.path:
        sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def hits(estimated, reference, window: float = 1.5) -> int:
    """Number of reference boundaries with an estimate within ``window`` seconds."""
    estimated = np.asarray(estimated)
    return int(sum(np.any(np.abs(estimated - r) <= window) for r in reference))


warnings.filterwarnings("ignore", category=DeprecationWarning)
