"""Atomic file writing: a temporary file in the same folder, then an atomic rename.

Readers see the old file or the new one, never a partial one, even if the writer is
killed; the new file gets the usual permissions (0666 minus the umask), not the 0600 of a
temporary file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator, Union

import numpy as np

PathLike = Union[str, os.PathLike]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` atomically.

    On any error (or interruption) the temporary file is removed and ``path`` is untouched.

    Parameters
    ----------
    path : path
        Final file.
    mode : str
        ``"wb"`` or ``"w"`` (text, UTF-8).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "w") as handle:
        handle.write(text)


def segments_csv(boundaries: np.ndarray, labels=None) -> str:
    """CSV text ``start,end,label`` (seconds, 3 decimals) of the segments between
    ``boundaries``; labels default to 1 as the author's export."""
    boundaries = np.asarray(boundaries, dtype=float)
    n = len(boundaries) - 1
    labels = [1] * n if labels is None else list(labels)
    lines = ["segment_start_time_sec,segment_stop_time_sec,segment_label"]
    lines += [f"{boundaries[i]:.3f},{boundaries[i + 1]:.3f},{labels[i]}" for i in range(n)]
    return "\n".join(lines) + "\n"
