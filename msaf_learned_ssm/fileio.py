"""Atomic file writing: a temporary file in the same folder, then an atomic rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Union

import numpy as np

PathLike = Union[str, os.PathLike]


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never
    a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def segments_csv(boundaries: np.ndarray, labels=None) -> str:
    """CSV text ``start,end,label`` (seconds, 3 decimals) of the segments between
    ``boundaries``; labels default to 1 as the author's export."""
    boundaries = np.asarray(boundaries, dtype=float)
    n = len(boundaries) - 1
    labels = [1] * n if labels is None else list(labels)
    lines = ["segment_start_time_sec,segment_stop_time_sec,segment_label"]
    lines += [f"{boundaries[i]:.3f},{boundaries[i + 1]:.3f},{labels[i]}" for i in range(n)]
    return "\n".join(lines) + "\n"
