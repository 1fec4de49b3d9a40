"""Parity with the author's release: the published checkpoints on the three reference files
reproduce the outputs of the author's own code (eval mode)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msaf_learned_ssm.audio import load_audio
from msaf_learned_ssm.checkpoint import load_model
from msaf_learned_ssm.config import ModelConfig, PeakConfig
from msaf_learned_ssm.features import compute_patches
from msaf_learned_ssm.peaks import boundary_times, pick_peaks

FILES = ["pop909_001", "pop909_002", "sargon_mindless_cut"]
CHECKPOINTS = ["nbatt1", "nbatt3"]


@pytest.fixture(scope="module")
def patches(shared_data):
    cache = {}

    def get(name):
        if name not in cache:
            y = load_audio(shared_data / "reference_audio" / f"{name}.flac")
            cache[name] = compute_patches(y, ModelConfig())
        return cache[name]
    return get


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("checkpoint", CHECKPOINTS)
def test_author_outputs_reproduced(shared_data, patches, name, checkpoint):
    ref = np.load(shared_data / "ssmnet_reference" / "outputs" / f"{name}__{checkpoint}.npz")
    p = patches(name)
    assert len(p) == int(ref["n_patches"])
    np.testing.assert_allclose(p.times, ref["patch_times_sec"], atol=1e-9)
    assert np.abs(p.data[:4] - ref["first_patches"]).max() < 1e-4

    model, _ = load_model(shared_data / "ssmnet_reference" / f"ssmnet_{checkpoint}_state_dict.pt")
    assert model.config.attention_layers == int(checkpoint[-1])
    with torch.inference_mode():
        _, novelty = model(torch.from_numpy(p.data))
    novelty = novelty.numpy()
    assert np.abs(novelty - ref["novelty"]).max() < 1e-4

    step = float(ref["step_sec"])
    assert step == pytest.approx(model.config.patch_hop_sec, abs=1e-9)
    peaks = pick_peaks(novelty, step, PeakConfig())
    np.testing.assert_array_equal(peaks, ref["boundary_frames"])
    # The author's export ends at the last patch time.
    np.testing.assert_allclose(boundary_times(peaks, p.times, p.times[-1]),
                               ref["boundaries_sec"], atol=1e-9)


@pytest.mark.parametrize("name", FILES)
def test_analyzer_path_reproduces_author_outputs(shared_data, name):
    """The product path (Analyzer: CPU layout and batching tuned for speed) keeps parity."""
    from msaf_learned_ssm import Analyzer

    ref = np.load(shared_data / "ssmnet_reference" / "outputs" / f"{name}__nbatt3.npz")
    analyzer = Analyzer(shared_data / "ssmnet_reference" / "ssmnet_nbatt3_state_dict.pt", "cpu")
    result = analyzer.analyze(shared_data / "reference_audio" / f"{name}.flac")
    assert np.abs(result.novelty - ref["novelty"]).max() < 1e-4
    np.testing.assert_array_equal(result.peaks, ref["boundary_frames"])


@pytest.mark.parametrize("checkpoint", CHECKPOINTS)
def test_named_author_models_are_the_published_weights(shared_data, checkpoint):
    """``author-nbatt1`` / ``author-nbatt3`` shipped in the package hold exactly the published
    weights, so the parity above holds for the named models too."""
    from msaf_learned_ssm.model_files import resolve_model

    published, _ = load_model(shared_data / "ssmnet_reference" / f"ssmnet_{checkpoint}_state_dict.pt")
    named, meta = load_model(resolve_model(f"author-{checkpoint}"))
    assert named.config == published.config
    for key, value in published.state_dict().items():
        assert torch.equal(value, named.state_dict()[key]), key
    assert meta["peaks"] == PeakConfig().to_dict() and "LGPL-3.0" in meta["license"]


@pytest.mark.parametrize("name", FILES)
def test_named_model_by_name_reproduces_author_outputs(shared_data, name):
    from msaf_learned_ssm import Analyzer

    ref = np.load(shared_data / "ssmnet_reference" / "outputs" / f"{name}__nbatt3.npz")
    result = Analyzer("author-nbatt3", "cpu").analyze(
        shared_data / "reference_audio" / f"{name}.flac")
    assert np.abs(result.novelty - ref["novelty"]).max() < 1e-4
    np.testing.assert_array_equal(result.peaks, ref["boundary_frames"])
