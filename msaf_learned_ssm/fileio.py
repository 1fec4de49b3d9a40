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


def _commit_new(tmp: str, path: Path) -> None:
    """Move ``tmp`` to ``path`` only if ``path`` does not exist (FileExistsError if it does)."""
    try:
        # A hard link fails if the destination exists, even one that appeared while
        # writing: no check-then-write race.
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:
        # File systems without hard links: fall back to check-then-replace.
        if path.exists():
            raise FileExistsError(f"{path}: file exists") from None
        os.replace(tmp, path)
    else:
        os.unlink(tmp)


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "wb", overwrite: bool = True) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it becomes ``path`` atomically.

    On any error (or interruption) the temporary file is removed and ``path`` is untouched.

    Parameters
    ----------
    path : path
        Final file.
    mode : str
        ``"wb"`` or ``"w"`` (text, UTF-8).
    overwrite : bool
        Replace an existing ``path``; if False, raise FileExistsError when ``path`` exists
        at the moment of the commit (the new content is then discarded).
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
        if overwrite:
            os.replace(tmp, path)
        else:
            _commit_new(tmp, path)
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
