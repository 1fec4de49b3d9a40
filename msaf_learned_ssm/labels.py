"""Segment labels from the learned SSM.

The network is trained so that its SSM is 1 between patches carrying the same label, so
the mean similarity between two segments says whether they repeat the same material.
Segments are clustered on that similarity (average-linkage agglomerative clustering); the
number of labels is chosen per track by the silhouette of the clustering.
"""

from __future__ import annotations

from typing import Union

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

#: Default similarity threshold: the best of 0.4..0.9 for the shipped model on the 79
#: convertible songs of the POP909 validation split (pairwise F 0.713, vs 0.704 for 0.65
#: and 0.656 for "auto"; ``python bench/label_threshold.py --ids training/splits/val.txt``).
DEFAULT_THRESHOLD = 0.6


def segment_similarity(embeddings: np.ndarray, patch_times: np.ndarray,
                       boundaries: np.ndarray) -> np.ndarray:
    """Mean learned similarity between every pair of segments.

    With unit-norm embeddings the SSM is ``0.5 + 0.5 e_i . e_j``, so the mean over two
    segments' blocks is ``0.5 + 0.5 mean(e)_a . mean(e)_b``: O(T) instead of O(T^2).

    Parameters
    ----------
    embeddings : np.ndarray, shape (T, E)
    patch_times : np.ndarray, shape (T,)
        Time of each patch (s).
    boundaries : np.ndarray, shape (n_segments + 1,)
        Segment boundaries (s), increasing.

    Returns
    -------
    np.ndarray, shape (n_segments, n_segments)
        Values in [0, 1]; segments with no patch inside use the nearest patch.
    """
    boundaries = np.asarray(boundaries, dtype=float)
    means = []
    for start, end in zip(boundaries[:-1], boundaries[1:]):
        inside = (patch_times >= start) & (patch_times < end)
        if not inside.any():
            inside = np.zeros(len(patch_times), dtype=bool)
            inside[np.argmin(np.abs(patch_times - 0.5 * (start + end)))] = True
        means.append(embeddings[inside].mean(axis=0))
    means = np.asarray(means)
    return np.clip(0.5 + 0.5 * means @ means.T, 0.0, 1.0)


def _silhouette(distance: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette of a clustering given a distance matrix (0 for one cluster)."""
    unique = np.unique(labels)
    if len(unique) < 2 or len(unique) >= len(labels):
        return 0.0
    scores = []
    for i, label in enumerate(labels):
        same = labels == label
        same[i] = False
        if not same.any():
            scores.append(0.0)
            continue
        a = distance[i, same].mean()
        b = min(distance[i, labels == other].mean() for other in unique if other != label)
        scores.append((b - a) / max(a, b) if max(a, b) > 0 else 0.0)
    return float(np.mean(scores))


def cluster_segments(similarity: np.ndarray, threshold: Union[float, str] = "auto",
                     max_labels: int = 10) -> np.ndarray:
    """Labels from a segment similarity matrix.

    Parameters
    ----------
    similarity : np.ndarray, shape (n, n)
        Symmetric, values in [0, 1].
    threshold : float or "auto"
        Segments whose average-linkage similarity is at least this share a label. "auto"
        tries every number of labels from 1 to ``max_labels`` and keeps the best
        silhouette (one label when no clustering reaches a silhouette of 0.1).
    max_labels : int

    Returns
    -------
    np.ndarray of int, shape (n,)
        Labels numbered by first appearance (0, 1, 2...).
    """
    n = similarity.shape[0]
    if n <= 1:
        return np.zeros(n, dtype=int)
    distance = 1.0 - 0.5 * (similarity + similarity.T)
    np.fill_diagonal(distance, 0.0)
    tree = linkage(squareform(np.clip(distance, 0, None), checks=False), method="average")
    if threshold == "auto":
        best, labels = 0.1, np.ones(n, dtype=int)
        for k in range(2, min(max_labels, n - 1) + 1):
            candidate = fcluster(tree, k, criterion="maxclust")
            score = _silhouette(distance, candidate)
            if score > best:
                best, labels = score, candidate
    else:
        labels = fcluster(tree, 1.0 - float(threshold), criterion="distance")
    _, first = np.unique(labels, return_index=True)
    order = {labels[i]: rank for rank, i in enumerate(sorted(first))}
    return np.array([order[label] for label in labels], dtype=int)


def label_segments(embeddings: np.ndarray, patch_times: np.ndarray, boundaries: np.ndarray,
                   threshold: Union[float, str] = DEFAULT_THRESHOLD) -> np.ndarray:
    """Labels of the segments between ``boundaries``, from the learned embeddings.

    Parameters
    ----------
    embeddings : np.ndarray, shape (T, E)
    patch_times : np.ndarray, shape (T,)
    boundaries : np.ndarray, shape (n_segments + 1,)
        Boundary times (s), from any algorithm.
    threshold : float or "auto"
        See :func:`cluster_segments`.

    Returns
    -------
    np.ndarray of int, shape (n_segments,)
    """
    if len(boundaries) < 2:
        return np.zeros(0, dtype=int)
    if len(patch_times) == 0 or not np.any(embeddings):
        return np.zeros(len(boundaries) - 1, dtype=int)
    return cluster_segments(segment_similarity(embeddings, patch_times, boundaries), threshold)
