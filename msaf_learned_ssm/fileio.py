"""Output helpers of the core: the atomic writer (from the bottom layer) and the CSV format."""

from __future__ import annotations

import numpy as np

from msaf_learned_ssm_jams.fileio import PathLike, atomic_open, atomic_write_text

__all__ = ["PathLike", "atomic_open", "atomic_write_text", "segments_csv"]


def segments_csv(boundaries: np.ndarray, labels=None) -> str:
    """CSV text ``start,end,label`` (seconds, 3 decimals) of the segments between
    ``boundaries``; labels default to 1 as the author's export."""
    boundaries = np.asarray(boundaries, dtype=float)
    n = len(boundaries) - 1
    labels = [1] * n if labels is None else list(labels)
    lines = ["segment_start_time_sec,segment_stop_time_sec,segment_label"]
    lines += [f"{boundaries[i]:.3f},{boundaries[i + 1]:.3f},{labels[i]}" for i in range(n)]
    return "\n".join(lines) + "\n"
