"""Peak picking on the novelty curve, as the author's release: local-mean ratio, minimum
distance, threshold. All parameters are given in seconds and converted with the patch hop."""

from __future__ import annotations

import numpy as np
from scipy.signal import find_peaks

from .config import PeakConfig


def local_mean_ratio(novelty: np.ndarray, half: int) -> np.ndarray:
    """Each value divided by the mean of the values within ``+- half`` samples.

    The window is truncated at the ends of the curve (the mean is over the samples that
    exist), as in the author's code.

    Parameters
    ----------
    novelty : np.ndarray, shape (T,)
    half : int >= 0

    Returns
    -------
    np.ndarray, shape (T,), float64
        0 where the local mean is 0.
    """
    x = np.asarray(novelty, dtype=np.float64)
    n = len(x)
    cumsum = np.concatenate([[0.0], np.cumsum(x)])
    idx = np.arange(n)
    start = np.maximum(idx - half, 0)
    stop = np.minimum(idx + half + 1, n)
    mean = (cumsum[stop] - cumsum[start]) / (stop - start)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(mean > 0, x / mean, 0.0)
    return ratio


def pick_peaks(novelty: np.ndarray, hop_sec: float, config: PeakConfig = PeakConfig()
               ) -> np.ndarray:
    """Indices of the novelty peaks that are boundaries.

    Parameters
    ----------
    novelty : np.ndarray, shape (T,)
        Novelty curve, one value per patch.
    hop_sec : float > 0
        Time between consecutive values (s).
    config : PeakConfig
        Local-mean half window, minimum distance (s) and ratio threshold.

    Returns
    -------
    np.ndarray of int, shape (n_peaks,)
        Sorted indices into ``novelty``, at least ``round(min_distance_sec / hop_sec)``
        apart.
    """
    novelty = np.asarray(novelty, dtype=np.float64)
    if novelty.ndim != 1:
        raise ValueError(f"novelty must be 1-D, got shape {novelty.shape}")
    if not hop_sec > 0:
        raise ValueError(f"hop_sec must be > 0, got {hop_sec}")
    if len(novelty) < 3:
        return np.zeros(0, dtype=int)
    # Windows longer than the curve act as the whole curve (and cannot overflow).
    half = int(min(np.round(config.mean_half_sec / hop_sec), len(novelty)))
    distance = max(1, int(min(np.round(config.min_distance_sec / hop_sec), len(novelty))))
    ratio = local_mean_ratio(novelty, half)
    peaks, _ = find_peaks(ratio, distance=distance)
    return peaks[ratio[peaks] >= config.threshold].astype(int)


def boundary_times(peaks: np.ndarray, patch_times: np.ndarray, end_time: float) -> np.ndarray:
    """Boundary times: 0, the peak times, and ``end_time``, sorted and unique.

    Parameters
    ----------
    peaks : np.ndarray of int, shape (n_peaks,)
    patch_times : np.ndarray, shape (T,)
    end_time : float
        Last boundary: the track duration (or, as the author's code, the last patch time).

    Returns
    -------
    np.ndarray, shape (n_boundaries,)
    """
    inner = np.asarray(patch_times)[np.asarray(peaks, dtype=int)]
    inner = inner[(inner > 0) & (inner < end_time)]
    return np.unique(np.concatenate([[0.0], inner, [float(end_time)]]))


def novelty_to_boundaries(novelty: np.ndarray, patch_times: np.ndarray, end_time: float,
                          hop_sec: float, config: PeakConfig = PeakConfig()
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Boundaries of a novelty curve: :func:`pick_peaks`, then :func:`boundary_times`.

    Parameters
    ----------
    novelty : np.ndarray, shape (T,)
        Must be finite: a NaN curve would silently give "no boundary".
    patch_times : np.ndarray, shape (T,)
        Time (s) of each novelty value.
    end_time : float
        Last boundary (s).
    hop_sec : float > 0
    config : PeakConfig

    Returns
    -------
    peaks : np.ndarray of int, shape (n_peaks,)
        Indices into ``novelty`` of the peaks kept.
    boundaries : np.ndarray, shape (n_boundaries,)
        0, the boundary times found (s), and ``end_time``.

    Raises
    ------
    ValueError
        If ``novelty`` holds NaN or infinite values.
    """
    novelty = np.asarray(novelty)
    if not np.all(np.isfinite(novelty)):
        raise ValueError(f"the novelty curve has {int(np.sum(~np.isfinite(novelty)))} "
                         "non-finite values (NaN or infinite weights?)")
    peaks = pick_peaks(novelty, hop_sec, config)
    return peaks, boundary_times(peaks, patch_times, end_time)
