"""The eval-mode inference path (fused attention, vectorised novelty band) gives the same
outputs as PyTorch's own layers and the full-SSM reference path."""

from __future__ import annotations

import torch

from msaf_learned_ssm import ModelConfig, SSMNet
from msaf_learned_ssm.model import _encoder_layer_eval, cosine_ssm


def test_fused_attention_equals_pytorch_layer():
    torch.manual_seed(0)
    model = SSMNet(ModelConfig(attention_layers=3)).eval()
    x = torch.randn(1, 300, 128)
    with torch.inference_mode():
        for layer in model.encoder.attention:
            torch.testing.assert_close(_encoder_layer_eval(layer, x), layer(x),
                                       atol=1e-5, rtol=1e-5)
            x = layer(x)


def test_eval_path_equals_author_path():
    torch.manual_seed(1)
    model = SSMNet(ModelConfig(attention_layers=3)).eval()
    x = torch.randn(120, 80, 40)
    with torch.inference_mode():
        embeddings, novelty = model(x)
        h = model.encoder.conv(x.unsqueeze(1)).flatten(1)
        h = model.encoder.attention(h.unsqueeze(0)).squeeze(0)
        expected = torch.nn.functional.normalize(torch.tanh(h), p=2, dim=1)
        torch.testing.assert_close(embeddings, expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(novelty, model.novelty.forward_full(cosine_ssm(expected)),
                                   atol=1e-5, rtol=1e-5)
