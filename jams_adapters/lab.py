"""Convert interval lists (``start end label``: ``.lab`` and ``.csv``) to JAMS.

- ``.lab`` (MIREX / Isophonics): ``<start> <end> <label>`` per line, separated by spaces
  or tabs; the label is the rest of the line and may contain spaces.
- ``.csv``: ``start,end,label`` per row (RFC 4180 quoting, so labels may hold commas);
  an optional header row is recognised by its first field not being a number.

Blank lines and ``#`` comments are skipped. Intervals are validated as they are
(no repair): they must be sorted and not overlap.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import jams
import numpy as np

from .errors import AnnotationError

from ._text import parse_time, read_lines
from .segments import segments_to_jams

__all__ = ["lab_to_jams", "csv_to_jams"]

_LAB_LINE = re.compile(r"^(\S+)[ \t]+(\S+)[ \t]+(.*\S)\s*$")


def _to_jams(rows, path, duration, namespace):
    intervals = np.array([[s, e] for s, e, _ in rows], dtype=float).reshape(-1, 2)
    labels = [lab for _, _, lab in rows]
    if not rows:
        raise AnnotationError(f"{path}: no segments")
    dur = float(duration) if duration is not None else float(intervals[:, 1].max())
    return segments_to_jams(
        intervals, labels, dur, namespace=namespace, source=str(path),
        sandbox={"source_file": Path(path).name},
    )


def lab_to_jams(
    path: str | Path, duration: float | None = None, namespace: str = "segment_open"
) -> jams.JAMS:
    """Convert a whitespace-separated ``start end label`` file to a JAMS.

    Parameters
    ----------
    path : str or Path
    duration : float or None
        Track duration in seconds; None uses the last end time.
    namespace : str
        Target namespace.

    Returns
    -------
    jams.JAMS

    Raises
    ------
    AnnotationError
        A line that is not ``<start> <end> <label>``, a time that is not a number, or
        invalid segments; the message names the file and the line or segment.
    """
    path = Path(path)
    rows = []
    for lineno, text in read_lines(path):
        m = _LAB_LINE.match(text)
        if m is None:
            raise AnnotationError(f"{path}:{lineno}: expected '<start> <end> <label>', got {text!r}")
        rows.append(_row(m.group(1), m.group(2), m.group(3), path, lineno))
    return _to_jams(rows, path, duration, namespace)


def _row(start: str, end: str, label: str, path: Path, lineno: int) -> tuple[float, float, str]:
    """One segment line, checked on its own: an end before the start names the line."""
    s, e = parse_time(start.strip(), path, lineno), parse_time(end.strip(), path, lineno)
    if e <= s:
        raise AnnotationError(f"{path}:{lineno}: segment ends ({e} s) before it starts ({s} s)")
    return s, e, label


def csv_to_jams(
    path: str | Path, duration: float | None = None, namespace: str = "segment_open"
) -> jams.JAMS:
    """Convert a ``start,end,label`` CSV file to a JAMS (see :func:`lab_to_jams`)."""
    path = Path(path)
    lines = read_lines(path)
    rows = []
    for k, (lineno, text) in enumerate(lines):
        if text.count('"') % 2:
            raise AnnotationError(f"{path}:{lineno}: unterminated quote in {text!r}")
        fields = next(csv.reader(io.StringIO(text), skipinitialspace=True))
        if len(fields) < 3:
            raise AnnotationError(f"{path}:{lineno}: expected 'start,end,label', got {text!r}")
        if k == 0:
            try:
                float(fields[0])
            except ValueError:
                continue  # header row
        label = ",".join(fields[2:]).strip()
        rows.append(_row(fields[0], fields[1], label, path, lineno))
    return _to_jams(rows, path, duration, namespace)
