"""Output helpers of the core: the atomic writer (from the bottom layer), the CSV format, and
the identity of an input file that outputs record."""

from __future__ import annotations

import functools
import os

import numpy as np

from msaf_learned_ssm_jams.fileio import PathLike, atomic_open, atomic_write_text

__all__ = ["PathLike", "atomic_open", "atomic_write_text", "audio_identity", "segments_csv"]


def segments_csv(boundaries: np.ndarray, labels=None) -> str:
    """CSV text ``start,end,label`` (seconds, 3 decimals) of the segments between
    ``boundaries``; labels default to 1 as the author's export."""
    boundaries = np.asarray(boundaries, dtype=float)
    n = len(boundaries) - 1
    labels = [1] * n if labels is None else list(labels)
    lines = ["segment_start_time_sec,segment_stop_time_sec,segment_label"]
    lines += [f"{boundaries[i]:.3f},{boundaries[i + 1]:.3f},{labels[i]}" for i in range(n)]
    return "\n".join(lines) + "\n"


@functools.lru_cache(maxsize=4096)
def _content_sha256(path: str, size: int, mtime_ns: int, inode: int) -> str:
    from .model_files import file_sha256

    return file_sha256(path, 32)


def audio_identity(path: PathLike) -> dict:
    """What outputs record of the input they describe.

    Returns
    -------
    dict
        ``audio_path``: the absolute path; ``audio_sha256``: the first 32 hex digits of the
        SHA-256 of the file's bytes (computed once per path, size, modification time and
        inode in a process).

    Raises
    ------
    OSError
        The file cannot be read.
    """
    path = os.path.abspath(os.fspath(path))
    st = os.stat(path)
    return {"audio_path": path,
            "audio_sha256": _content_sha256(path, st.st_size, st.st_mtime_ns, st.st_ino)}
