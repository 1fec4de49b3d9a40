"""The model's pieces: band novelty equals the full convolution, checkerboard kernels,
encoder shapes, and the untrained pipeline on planted sections."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from msaf_learned_ssm import Analyzer, ModelConfig, SSMNet
from msaf_learned_ssm.model import (checkerboard_kernel, cosine_ssm, diagonal_conv, ssm_band)

from conftest import PLANTED_LABELS, hits, untrained_model


@pytest.mark.parametrize("n,size,channels", [(1, 5, 1), (7, 9, 2), (30, 7, 3), (100, 45, 3),
                                             (44, 45, 3)])
def test_diagonal_conv_equals_full_conv(n, size, channels):
    torch.manual_seed(n)
    e = F.normalize(torch.randn(n, 16), dim=1)
    weight, bias = torch.randn(channels, 1, size, size), torch.randn(channels)
    full = F.conv2d(cosine_ssm(e)[None, None], weight, bias, padding="same")[0]
    expected = torch.diagonal(full, dim1=1, dim2=2).T
    got = diagonal_conv(ssm_band(e, size - 1), weight, bias)
    assert got.shape == (n, channels)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_ssm_band_matches_ssm():
    e = F.normalize(torch.randn(12, 8), dim=1)
    ssm, band = cosine_ssm(e), ssm_band(e, 3)
    for i in range(12):
        for d in range(-3, 4):
            j = i + d
            want = ssm[i, j] if 0 <= j < 12 else 0.0
            assert float(band[i, 3 + d]) == pytest.approx(float(want), abs=1e-5)


@pytest.mark.parametrize("n,half_width,chunk", [(50, 7, 8), (50, 20, 3), (9, 12, 4),
                                                (64, 5, 64), (65, 5, 64)])
def test_ssm_band_chunks_equal_dense_band(n, half_width, chunk):
    # Chunk edges (a partial last chunk, chunks narrower than the band) change nothing.
    torch.manual_seed(n + chunk)
    e = F.normalize(torch.randn(n, 16), dim=1)
    ssm = F.pad(cosine_ssm(e), (half_width, half_width))  # zero outside the track
    dense = torch.stack([ssm[i, i: i + 2 * half_width + 1] for i in range(n)])
    torch.testing.assert_close(ssm_band(e, half_width, chunk=chunk), dense,
                               atol=1e-5, rtol=0)


def test_novelty_head_band_equals_full_path():
    model = SSMNet(ModelConfig(attention_layers=1)).eval()
    x = torch.randn(60, 80, 40)
    with torch.no_grad():
        e, novelty = model(x)
        full = model.novelty.forward_full(cosine_ssm(e))
    torch.testing.assert_close(novelty, full, atol=1e-5, rtol=1e-5)


def test_band_novelty_is_differentiable():
    model = SSMNet(ModelConfig(attention_layers=0))
    _, novelty = model(torch.randn(50, 80, 40))
    novelty.sum().backward()
    assert model.novelty.kernels.weight.grad is not None
    assert model.encoder.conv[0][0].weight.grad.abs().sum() > 0


def test_checkerboard_kernel():
    k = checkerboard_kernel(3, 2.0)
    assert k.shape == (7, 7)
    assert np.all(k[3, :] == 0) and np.all(k[:, 3] == 0)
    assert k[0, 0] > 0 and k[6, 6] > 0 and k[0, 6] < 0 and k[6, 0] < 0
    np.testing.assert_allclose(k, k.T)


def test_checkerboard_init_and_freeze():
    cfg = ModelConfig(freeze_kernels=True)
    model = SSMNet(cfg)
    w = model.novelty.kernels.weight.detach().numpy()
    assert w.shape == (3, 1, 45, 45)
    np.testing.assert_allclose(w[0, 0], 0.05 * checkerboard_kernel(22, 11), atol=1e-7)
    np.testing.assert_allclose(w[2, 0], 0.05 * checkerboard_kernel(22, 9), atol=1e-7)
    assert not model.novelty.kernels.weight.requires_grad


def test_encoder_output_is_unit_norm_any_attention():
    for layers in (0, 1, 3):
        model = SSMNet(ModelConfig(attention_layers=layers)).eval()
        with torch.no_grad():
            e = model.embed(torch.randn(9, 80, 40))
        assert e.shape == (9, 128)
        torch.testing.assert_close(e.norm(dim=1), torch.ones(9))


def test_untrained_pipeline_finds_planted_boundaries(planted_track):
    path, planted = planted_track
    analysis = Analyzer(untrained_model(), "cpu").analyze(path)
    inner = planted[1:-1]
    found = analysis.boundaries[1:-1]
    assert hits(found, inner) >= len(inner) - 1, (found, inner)
    assert len(found) <= len(inner) + 1
    assert analysis.boundaries[0] == 0 and analysis.boundaries[-1] == pytest.approx(planted[-1])
    assert len(set(PLANTED_LABELS)) == 4
