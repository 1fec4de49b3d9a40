"""Ground truth on the patch grid: which patches share a label (SSM) and where the label
changes (novelty), from segment annotations."""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: Smoothing of the boundary impulses, as the author's release.
NOVELTY_SMOOTHING = np.array([0.25, 0.5, 1.0, 0.5, 0.25])


def patch_labels(patch_times: np.ndarray, intervals: np.ndarray, labels: Sequence[str],
                 lead_sec: float = 0.0) -> np.ndarray:
    """Integer label of each patch: the segment with ``start < t + lead_sec <= end``.

    With ``lead_sec = 0`` (the author's rule) the label changes at the first patch after
    a boundary. On a beat grid the boundaries fall on beats, within the tracker's error of
    a patch centre, so that rule would put the change on that beat or the next one by
    chance; half the grid's hop as ``lead_sec`` puts it on the patch nearest the boundary.

    Parameters
    ----------
    patch_times : np.ndarray, shape (T,)
        Patch centres (s).
    intervals : np.ndarray, shape (n, 2)
        Segment start/end (s), sorted and non-overlapping.
    labels : sequence of str, length n
    lead_sec : float
        Shift of the patch times before labelling (s).

    Returns
    -------
    np.ndarray of int, shape (T,)
        Index of the label string among the distinct labels (equal strings share an
        index); -1 for patches outside every segment.
    """
    intervals = np.asarray(intervals, dtype=float)
    names = {name: i for i, name in enumerate(dict.fromkeys(labels))}
    out = np.full(len(patch_times), -1, dtype=int)
    times = np.asarray(patch_times, dtype=float) + lead_sec
    for (start, end), label in zip(intervals, labels):
        out[(times > start) & (times <= end)] = names[label]
    return out


def ground_truth_ssm(label_ids: np.ndarray) -> np.ndarray:
    """1 where two patches carry the same label, else 0 (patches without label: 0).

    Parameters
    ----------
    label_ids : np.ndarray of int, shape (T,)

    Returns
    -------
    np.ndarray, shape (T, T), float32
    """
    same = label_ids[:, None] == label_ids[None, :]
    return (same & (label_ids[:, None] >= 0)).astype(np.float32)


def ground_truth_novelty(label_ids: np.ndarray) -> np.ndarray:
    """1 at each patch where the label changes, smoothed by [0.25, 0.5, 1, 0.5, 0.25].

    Parameters
    ----------
    label_ids : np.ndarray of int, shape (T,)

    Returns
    -------
    np.ndarray, shape (T,), float32, values in [0, 1]
    """
    impulses = np.zeros(len(label_ids))
    impulses[np.flatnonzero(np.diff(label_ids) != 0) + 1] = 1.0
    smoothed = np.convolve(impulses, NOVELTY_SMOOTHING, mode="same")
    return np.clip(smoothed, 0.0, 1.0).astype(np.float32)


def reference_boundaries(intervals: np.ndarray) -> np.ndarray:
    """Boundary times (s) of an annotation: every segment start and the last end."""
    intervals = np.asarray(intervals, dtype=float)
    return np.unique(np.concatenate([intervals[:, 0], intervals[-1:, 1]]))
