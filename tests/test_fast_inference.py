"""The eval-mode inference path (fused attention, vectorised novelty band) gives the same
outputs as PyTorch's own layers and the full-SSM reference path; batch analysis gives what
one-file analysis gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msaf_learned_ssm import ModelConfig, SSMNet
from msaf_learned_ssm.errors import ConfigError
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


@pytest.mark.parametrize("prefetch, workers", [(None, None), (0, 1), (2, 1), (None, 2)])
def test_analyze_many_equals_analyze_and_reports_bad_files(tmp_path, prefetch, workers):
    import soundfile as sf

    from msaf_learned_ssm import Analyzer, AudioLoadError
    from msaf_learned_ssm.examples import synthesize_sections

    analyzer = Analyzer(SSMNet(ModelConfig(attention_layers=1)).eval(), "cpu")
    paths = []
    for i, labels in enumerate(["ABAB", "AABB"]):
        paths.append(tmp_path / f"track{i}.wav")
        sf.write(paths[-1], synthesize_sections(labels, 8.0, seed=i)[0], 22050)
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio\n" * 50)
    order = [paths[0], bad, paths[1]]
    results = list(analyzer.analyze_many(order, prefetch=prefetch, workers=workers))
    assert [path for path, _ in results] == [str(p) for p in order]
    assert isinstance(results[1][1], AudioLoadError) and str(bad) in str(results[1][1])
    for (path, result) in (results[0], results[2]):
        expected = analyzer.analyze(path)
        np.testing.assert_array_equal(result.boundaries, expected.boundaries)
        np.testing.assert_allclose(result.novelty, expected.novelty, atol=1e-6)


@pytest.mark.parametrize("batch_tracks", [2, 3])
def test_tracks_batched_in_one_forward_pass_give_the_same_analyses(tmp_path, batch_tracks):
    """analyze_many(batch_tracks=N): one conv pass for N files, same results and order as
    file by file, a bad file and a too-short file reported or trivial on their own."""
    import warnings

    import soundfile as sf

    from msaf_learned_ssm import Analyzer, AudioLoadError
    from msaf_learned_ssm.examples import synthesize_sections

    analyzer = Analyzer(SSMNet(ModelConfig(attention_layers=1)).eval(), "cpu")
    paths = []
    for i, labels in enumerate(["ABAB", "AABB", "ABCA"]):
        paths.append(tmp_path / f"track{i}.wav")
        sf.write(paths[-1], synthesize_sections(labels, 8.0 + i, seed=i)[0], 22050)
    short = tmp_path / "short.wav"
    sf.write(short, synthesize_sections("A", 5.0)[0], 22050)
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio\n" * 50)
    order = [paths[0], short, paths[1], bad, paths[2]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # workers=1: the batches are formed in this process (worker processes on a CPU
        # analyse one file at a time).
        batched = list(analyzer.analyze_many(order, prefetch=0, batch_tracks=batch_tracks,
                                             workers=1))
        single = list(analyzer.analyze_many(order, prefetch=0, workers=1))
    assert [p for p, _ in batched] == [str(p) for p in order]
    assert isinstance(batched[3][1], AudioLoadError)
    for (_, got), (_, expected) in zip(batched, single):
        if isinstance(expected, Exception):
            continue
        np.testing.assert_array_equal(got.boundaries, expected.boundaries)
        np.testing.assert_allclose(got.embeddings, expected.embeddings, atol=1e-5)
        np.testing.assert_allclose(got.novelty, expected.novelty, atol=1e-5)
    with pytest.raises(ConfigError, match="batch_tracks"):
        list(analyzer.analyze_many(order, batch_tracks=0))


def test_default_prefetch_follows_the_device_and_the_threads(monkeypatch):
    from msaf_learned_ssm import Analyzer, inference

    analyzer = Analyzer(SSMNet(ModelConfig(attention_layers=1)).eval(), "cpu")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 16)
    monkeypatch.setattr(inference, "default_threads", lambda: 16)
    assert analyzer.default_prefetch() == 0  # every core runs the encoder
    monkeypatch.setattr(inference, "default_threads", lambda: 32)
    assert analyzer.default_prefetch() == 2  # spare cores decode ahead
    # With a GPU the cores are free: one file per thread decodes ahead (only the device's
    # type is read, so no GPU is needed to check the rule).
    analyzer.device = torch.device("cuda")
    assert analyzer.default_prefetch() == 16
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert analyzer.default_prefetch() == 2
