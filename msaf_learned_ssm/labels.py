"""Segment labels from the learned SSM.

The network is trained so that its SSM is 1 between patches carrying the same label, so
the similarity between two segments says whether they repeat the same material. Two
measures: the mean similarity of the two segments' block (``"mean"``, order-blind), and
the best diagonal of that block over time lags (``"aligned"``: a repeated section repeats
its material in order, which a verse and a chorus sharing chords do not). Segments are
clustered on it (average-linkage agglomerative clustering, cut at a similarity threshold).

When the beat-synchronous chroma of the track is given, the learned similarity is averaged
with a harmonic one: the distance between the segments' 2D-Fourier magnitudes of chroma
(the features of MSAF's ``fmc2d``, Nieto & Bello 2014), which are invariant to time shifts
and transpositions and see chord progressions that the embeddings, trained on few songs,
may miss.
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from .errors import ConfigError
from .features import sync_frames

#: Segment similarities :func:`label_segments` can use.
SIMILARITIES = ("aligned", "mean")

#: Default similarity and thresholds (with the chroma, and for the learned similarity
#: alone): the best pooled pairwise F on the validation renders (``bench/results/labels.md``,
#: ``bench/label_methods.py``).
DEFAULT_SIMILARITY = "aligned"
DEFAULT_THRESHOLD = 0.5
DEFAULT_THRESHOLD_LEARNED_ONLY = 0.85

#: Weight of the learned similarity against the chroma one when chroma is given.
DEFAULT_CHROMA_WEIGHT = 0.2

#: Beat-synchronous chroma frames left out at each end of a segment before its 2D-FMC
#: (fmc2d's ``2dfmc_offset``: boundaries are rarely exactly on the beat).
FMC_OFFSET = 4

#: In ``"aligned"``, a lag counts only where the two segments overlap on at least this
#: share of the shorter one, so that a few patches cannot decide a match.
MIN_OVERLAP = 0.5


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
    means = np.asarray([embeddings[rows].mean(axis=0)
                        for rows in _segment_rows(patch_times, boundaries)])
    return np.clip(0.5 + 0.5 * means @ means.T, 0.0, 1.0)


def diagonal_means(block: np.ndarray, min_length: int = 1) -> np.ndarray:
    """Mean of each diagonal of ``block`` that holds at least ``min_length`` values.

    Parameters
    ----------
    block : np.ndarray, shape (n_a, n_b)
    min_length : int >= 1

    Returns
    -------
    np.ndarray, shape (n_kept,)
        Ordered by lag, from the bottom-left diagonal to the top-right one.
    """
    n_a, n_b = block.shape
    lag = (np.arange(n_b)[None, :] - np.arange(n_a)[:, None]).ravel() + n_a - 1
    sums = np.bincount(lag, weights=block.ravel(), minlength=n_a + n_b - 1)
    counts = np.bincount(lag, minlength=n_a + n_b - 1)
    keep = counts >= min_length
    return sums[keep] / counts[keep]


def _segment_rows(times: np.ndarray, boundaries: np.ndarray) -> list[np.ndarray]:
    """Indices of the rows inside each segment (the nearest row for an empty one)."""
    rows = []
    for start, end in zip(boundaries[:-1], boundaries[1:]):
        inside = np.flatnonzero((times >= start) & (times < end))
        if inside.size == 0:
            inside = np.array([np.argmin(np.abs(times - 0.5 * (start + end)))])
        rows.append(inside)
    return rows


def aligned_similarity(embeddings: np.ndarray, patch_times: np.ndarray,
                       boundaries: np.ndarray, min_overlap: float = MIN_OVERLAP
                       ) -> np.ndarray:
    """Similarity of every pair of segments at their best time alignment.

    For two segments, the learned SSM's block between them is averaged along each diagonal
    (one time lag) that covers at least ``min_overlap`` of the shorter segment; the best
    lag's mean is their similarity. A repeated section scores high at the lag where it
    repeats, whatever the lengths.

    Parameters
    ----------
    embeddings : np.ndarray, shape (T, E)
        Unit-norm embeddings.
    patch_times : np.ndarray, shape (T,)
        Time of each embedding (s), increasing.
    boundaries : np.ndarray, shape (n_segments + 1,)
        Segment boundaries (s), increasing.
    min_overlap : float in (0, 1]

    Returns
    -------
    np.ndarray, shape (n_segments, n_segments)
        Symmetric, values in [0, 1], ones on the diagonal.
    """
    boundaries = np.asarray(boundaries, dtype=float)
    segments = [embeddings[rows] for rows in _segment_rows(patch_times, boundaries)]
    n = len(segments)
    similarity = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            block = 0.5 + 0.5 * segments[i] @ segments[j].T
            need = max(1, int(min_overlap * min(block.shape)))
            similarity[i, j] = similarity[j, i] = diagonal_means(block, need).max()
    return np.clip(similarity, 0.0, 1.0)


def beat_chroma(chroma: np.ndarray, frame_sec: float, beat_times: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Chroma averaged (median) between consecutive beats.

    Parameters
    ----------
    chroma : np.ndarray, shape (n_frames, 12)
        Frame ``t`` at ``t * frame_sec`` seconds.
    frame_sec : float
        Frame hop (s).
    beat_times : np.ndarray, shape (n_beats,)
        Increasing beat times (s).

    Returns
    -------
    starts : np.ndarray, shape (n_rows,)
        Start time of each row (s): 0, then each beat inside the frames.
    rows : np.ndarray, shape (n_rows, 12)
    """
    n = len(chroma)
    cuts = np.unique(np.clip(np.round(np.asarray(beat_times) / frame_sec).astype(int), 1, n))
    edges = np.concatenate([[0], cuts[cuts < n], [n]])
    return edges[:-1] * frame_sec, sync_frames(chroma, edges, np.median)


def fmc2d_features(segments: list[np.ndarray], offset: int = FMC_OFFSET) -> np.ndarray:
    """2D-Fourier magnitude coefficients of each segment's chroma, as MSAF's fmc2d.

    Each segment (its ``offset // 2`` first and last rows left out) is zero-padded to the
    longest one; the magnitude of its 2D FFT, shifted and flattened, keeps fmc2d's
    non-redundant quarter, log-compressed.

    Parameters
    ----------
    segments : list of np.ndarray, each shape (n_rows_i, 12)
    offset : int >= 0

    Returns
    -------
    np.ndarray, shape (n_segments, n_coefficients)
    """
    longest = max(len(seg) for seg in segments)
    features = []
    for seg in segments:
        padded = np.zeros((longest, seg.shape[1]))
        if len(seg) <= offset or offset == 0:
            padded[:len(seg)] = seg
        else:
            padded[:len(seg) - offset] = seg[offset // 2: len(seg) - offset // 2]
        magnitude = np.fft.fftshift(np.abs(np.fft.fft2(padded))).ravel()
        half = magnitude[: magnitude.size // 2 + 1]
        features.append(half[half.size // 2:])
    return np.log1p(np.asarray(features))


def chroma_similarity(chroma_rows: np.ndarray, row_starts: np.ndarray,
                      boundaries: np.ndarray) -> np.ndarray:
    """Harmonic similarity of every pair of segments from their beat-synchronous chroma.

    ``exp(-d / median(d))`` of the Euclidean distances ``d`` between the segments'
    :func:`fmc2d_features`, each coefficient scaled to unit variance over the track's
    segments (fmc2d's whitening).

    Parameters
    ----------
    chroma_rows : np.ndarray, shape (n_rows, 12)
    row_starts : np.ndarray, shape (n_rows,)
        Start time of each row (s), increasing (:func:`beat_chroma`).
    boundaries : np.ndarray, shape (n_segments + 1,)

    Returns
    -------
    np.ndarray, shape (n_segments, n_segments)
        Symmetric, values in (0, 1], ones on the diagonal.
    """
    boundaries = np.asarray(boundaries, dtype=float)
    rows = _segment_rows(row_starts, boundaries)
    features = fmc2d_features([chroma_rows[r] for r in rows])
    spread = features.std(axis=0)
    features = features / np.where(spread > 0, spread, 1.0)
    distance = np.sqrt(((features[:, None] - features[None]) ** 2).sum(axis=-1))
    n = len(distance)
    scale = float(np.median(distance[np.triu_indices(n, 1)])) if n > 1 else 1.0
    return np.exp(-distance / max(scale, 1e-9))


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


def segment_linkage(similarity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average-linkage tree of segments from their similarity.

    Parameters
    ----------
    similarity : np.ndarray, shape (n, n), n >= 2
        Values in [0, 1] (symmetrised here).

    Returns
    -------
    tree : np.ndarray, shape (n - 1, 4)
        ``scipy.cluster.hierarchy.linkage`` output.
    distance : np.ndarray, shape (n, n)
        ``1 - similarity``, zero diagonal.
    """
    distance = 1.0 - 0.5 * (similarity + similarity.T)
    np.fill_diagonal(distance, 0.0)
    tree = linkage(squareform(np.clip(distance, 0, None), checks=False), method="average")
    return tree, distance


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
    tree, distance = segment_linkage(similarity)
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
                   threshold: Union[float, str, None] = None,
                   similarity: str = DEFAULT_SIMILARITY,
                   chroma: Optional[tuple[np.ndarray, np.ndarray]] = None,
                   chroma_weight: float = DEFAULT_CHROMA_WEIGHT) -> np.ndarray:
    """Labels of the segments between ``boundaries``, from the learned embeddings.

    Parameters
    ----------
    embeddings : np.ndarray, shape (T, E)
    patch_times : np.ndarray, shape (T,)
    boundaries : np.ndarray, shape (n_segments + 1,)
        Boundary times (s), from any algorithm.
    threshold : float, "auto" or None
        See :func:`cluster_segments`. None: :data:`DEFAULT_THRESHOLD` with ``chroma``,
        :data:`DEFAULT_THRESHOLD_LEARNED_ONLY` without.
    similarity : {"aligned", "mean"}
        :func:`aligned_similarity` or :func:`segment_similarity`.
    chroma : (row_starts, rows) or None
        Beat-synchronous chroma (:func:`beat_chroma`); when given, the similarity is
        ``chroma_weight * learned + (1 - chroma_weight) *`` :func:`chroma_similarity`.
    chroma_weight : float in [0, 1]

    Returns
    -------
    np.ndarray of int, shape (n_segments,)
    """
    if similarity not in SIMILARITIES:
        raise ConfigError(f"label similarity must be one of {', '.join(SIMILARITIES)}, "
                          f"got {similarity!r}")
    if len(boundaries) < 2:
        return np.zeros(0, dtype=int)
    if len(patch_times) == 0 or not np.any(embeddings):
        return np.zeros(len(boundaries) - 1, dtype=int)
    if not 0.0 <= chroma_weight <= 1.0:
        raise ConfigError(f"chroma_weight must be in [0, 1], got {chroma_weight!r}")
    measure = aligned_similarity if similarity == "aligned" else segment_similarity
    combined = measure(embeddings, patch_times, boundaries)
    use_chroma = chroma is not None and len(chroma[0]) > 0
    if use_chroma:
        row_starts, rows = chroma
        combined = (chroma_weight * combined
                    + (1.0 - chroma_weight) * chroma_similarity(rows, row_starts, boundaries))
    if threshold is None:
        threshold = DEFAULT_THRESHOLD if use_chroma else DEFAULT_THRESHOLD_LEARNED_ONLY
    return cluster_segments(combined, threshold)
