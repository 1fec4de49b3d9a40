"""Segment labels: learned similarities, chroma 2D-FMC similarity, clustering."""

from __future__ import annotations

import numpy as np
import pytest

from msaf_learned_ssm.errors import ConfigError
from msaf_learned_ssm.labels import (aligned_similarity, beat_chroma, chroma_similarity,
                                     cluster_segments, diagonal_means, fmc2d_features,
                                     label_segments, segment_similarity)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _sections(pattern: str, per_section: int = 20, dim: int = 16, seed: int = 0):
    """Embeddings of sections: a label's patches vary around that label's own direction, in
    the same order each time the label comes back."""
    rng = np.random.default_rng(seed)
    material = {label: _unit(rng.normal(size=dim) + 0.3 * rng.normal(size=(per_section, dim)))
                for label in sorted(set(pattern))}
    emb = np.concatenate([material[label] for label in pattern])
    times = np.arange(len(emb)) * 0.5 + 0.25
    bounds = np.arange(len(pattern) + 1) * per_section * 0.5
    return emb, times, bounds


def test_diagonal_means_match_numpy():
    block = np.arange(20.0).reshape(4, 5)
    expected = [np.diagonal(block, lag).mean() for lag in range(-3, 5)]
    np.testing.assert_allclose(diagonal_means(block), expected)
    # Only the diagonals holding at least 4 values: lags 0 and 1.
    np.testing.assert_allclose(diagonal_means(block, 4), expected[3:5])


@pytest.mark.parametrize("similarity", ["aligned", "mean"])
def test_repeated_sections_share_a_label_numbered_by_first_appearance(similarity):
    emb, times, bounds = _sections("BABCA")
    labels = label_segments(emb, times, bounds, similarity=similarity)
    assert labels.tolist() == [0, 1, 0, 2, 1]


def test_aligned_similarity_sees_order_that_the_mean_does_not():
    rng = np.random.default_rng(1)
    seq = _unit(rng.normal(size=(16, 8)))
    emb = np.concatenate([seq, seq, seq[::-1]])
    times = np.arange(48) * 0.5 + 0.25
    bounds = np.array([0.0, 8.0, 16.0, 24.0])
    mean = segment_similarity(emb, times, bounds)
    aligned = aligned_similarity(emb, times, bounds)
    assert mean[0, 1] == pytest.approx(mean[0, 2])  # same patches, so same mean
    assert aligned[0, 1] == pytest.approx(1.0)
    assert aligned[0, 2] < 0.8


def test_aligned_similarity_finds_a_repeat_at_a_time_lag():
    rng = np.random.default_rng(2)
    seq = _unit(rng.normal(size=(24, 8)))
    other = _unit(rng.normal(size=(4, 8)))
    # The second segment holds the first one's material 4 patches late.
    emb = np.concatenate([seq[:20], other, seq[:16]])
    times = np.arange(len(emb)) * 0.5 + 0.25
    sim = aligned_similarity(emb, times, np.array([0.0, 10.0, 20.0]))
    assert sim[0, 1] == pytest.approx(1.0)


def test_fmc2d_features_ignore_transposition_and_circular_time_shift():
    rng = np.random.default_rng(3)
    seg = rng.random((12, 12))
    moved = np.roll(np.roll(seg, 5, axis=1), 3, axis=0)
    features = fmc2d_features([seg, moved, rng.random((12, 12))], offset=0)
    np.testing.assert_allclose(features[0], features[1], atol=1e-9)
    assert not np.allclose(features[0], features[2])


def test_chroma_similarity_groups_repeated_progressions():
    rng = np.random.default_rng(4)
    progression = {"A": rng.random((16, 12)), "B": rng.random((16, 12))}
    rows = np.concatenate([progression[x] + 0.01 * rng.random((16, 12)) for x in "ABAB"])
    starts = np.arange(len(rows)) * 0.5
    sim = chroma_similarity(rows, starts, np.array([0.0, 8.0, 16.0, 24.0, 32.0]))
    assert sim.shape == (4, 4)
    np.testing.assert_allclose(np.diag(sim), 1.0)
    assert min(sim[0, 2], sim[1, 3]) > 0.8 > max(sim[0, 1], sim[0, 3], sim[1, 2])


def test_chroma_decides_when_the_embeddings_cannot():
    rng = np.random.default_rng(5)
    emb = _unit(rng.normal(size=(80, 16)))  # no structure at all
    times = np.arange(80) * 0.5 + 0.25
    progression = {"A": rng.random((20, 12)), "B": rng.random((20, 12))}
    rows = np.concatenate([progression[x] for x in "ABAB"])
    bounds = np.array([0.0, 10.0, 20.0, 30.0, 40.0])
    labels = label_segments(emb, times, bounds, chroma=(np.arange(80) * 0.5, rows))
    assert labels.tolist() == [0, 1, 0, 1]


def test_beat_chroma_takes_the_median_between_beats():
    chroma = np.zeros((100, 12))
    chroma[:, 0] = np.arange(100)
    starts, rows = beat_chroma(chroma, 0.1, np.array([2.0, 5.0]))
    np.testing.assert_allclose(starts, [0.0, 2.0, 5.0])
    np.testing.assert_allclose(rows[:, 0], [np.median(np.arange(20)), np.median(np.arange(20, 50)),
                                            np.median(np.arange(50, 100))])


def test_cluster_segments_threshold_and_auto():
    sim = np.array([[1.0, 0.2, 0.9], [0.2, 1.0, 0.1], [0.9, 0.1, 1.0]])
    assert cluster_segments(sim, 0.5).tolist() == [0, 1, 0]
    assert cluster_segments(sim, 0.05).tolist() == [0, 0, 0]
    sim4 = np.array([[1, .2, .9, .2], [.2, 1, .1, .9], [.9, .1, 1, .2], [.2, .9, .2, 1]])
    assert cluster_segments(sim4, "auto").tolist() == [0, 1, 0, 1]


def test_label_settings_are_checked():
    emb, times, bounds = _sections("AB")
    with pytest.raises(ConfigError, match="similarity"):
        label_segments(emb, times, bounds, similarity="median")
    with pytest.raises(ConfigError, match="chroma_weight"):
        label_segments(emb, times, bounds, chroma=(times, np.ones((40, 12))), chroma_weight=2.0)


def test_analysis_with_labels_keeps_boundaries_and_labels_every_segment(planted_track,
                                                                        untrained_model_path):
    from msaf_learned_ssm import Analyzer

    analyzer = Analyzer(untrained_model_path, device="cpu")
    plain = analyzer.analyze(planted_track[0])
    full = analyzer.analyze(planted_track[0], labels=True)
    np.testing.assert_array_equal(plain.boundaries, full.boundaries)
    np.testing.assert_array_equal(plain.embeddings, full.embeddings)
    assert plain.chroma is None and full.chroma.shape[1] == 12
    assert len(full.chroma_times) == len(full.chroma) == len(full.beats.times) + 1
    labels = full.labels()
    assert labels.shape == (len(full.boundaries) - 1,) and labels[0] == 0
    # Without the chroma the labels come from the embeddings alone.
    assert plain.labels().shape == labels.shape
