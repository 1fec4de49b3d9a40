"""Shared plumbing for the text-format converters: reading lines, onset-label lists.

Private: the public converters are in harmonix.py, salami.py and lab.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .errors import AnnotationError

#: Label that closes the last segment in Harmonix and SALAMI onset lists.
END_LABEL = "end"

#: Largest time accepted in an annotation (s): about 11.6 days, beyond any recording; larger
#: values (1e308...) are typos or corrupt files, and would overflow later arithmetic.
MAX_TIME_SEC = 1e6


def read_lines(path: str | Path) -> list[tuple[int, str]]:
    """Return ``(line_number, text)`` for each non-blank, non-comment line of a text file.

    Tolerates a UTF-8 byte-order mark, CRLF line ends and surrounding whitespace; lines
    starting with ``#`` are comments.

    Raises
    ------
    AnnotationError
        The file is missing, unreadable, not UTF-8 text, or has no content lines.
    """
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: file not found")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise AnnotationError(f"{path}: cannot read file ({exc})") from None
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"{path}: not UTF-8 text ({exc})") from None
    if "\x00" in text:
        raise AnnotationError(f"{path}: binary file, not text")
    out = [
        (i + 1, line.strip())
        for i, line in enumerate(text.splitlines())
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not out:
        raise AnnotationError(f"{path}: no annotation lines")
    return out


def parse_time(token: str, path: Path | str, lineno: int) -> float:
    """A time in seconds, finite, >= 0 and <= :data:`MAX_TIME_SEC` (AnnotationError naming the line)."""
    try:
        t = float(token)
    except ValueError:
        raise AnnotationError(f"{path}:{lineno}: {token!r} is not a time in seconds") from None
    if not np.isfinite(t):
        raise AnnotationError(f"{path}:{lineno}: time {token!r} is not finite")
    if t < 0:
        raise AnnotationError(f"{path}:{lineno}: time {token!r} is negative")
    if t > MAX_TIME_SEC:
        raise AnnotationError(f"{path}:{lineno}: time {token!r} s is beyond any recording "
                              f"(> {MAX_TIME_SEC:g} s)")
    return t


def parse_onset_labels(
    path: Path | str,
    separator: str,
    duration: float | None,
    strict: bool,
) -> tuple[np.ndarray, list[str], list[str]]:
    """Parse a ``<onset><sep><label>`` list whose last line is ``<time> end``.

    Each line opens a segment that the next line closes. Irregularities are repaired
    (and described in the returned notes) unless ``strict``, when they raise:

    - more than one ``end`` line: the segmentation stops at the first; later lines are
      dropped (Harmonix: 4 files have a second ``end`` up to 46 s later);
    - no ``end`` line: the last segment is closed at ``duration`` (an error if None);
    - a line repeating the previous onset: the earlier, zero-length, segment is dropped.

    Returns
    -------
    intervals : np.ndarray, shape (n, 2)
    labels : list of str
    notes : list of str
        One human-readable sentence per repair, naming the line.
    """
    lines = read_lines(path)
    pattern = re.compile(r"^(\S+)" + separator + r"(.*)$")
    times: list[float] = []
    labels: list[str] = []
    linenos: list[int] = []
    notes: list[str] = []
    end_time = None
    for lineno, text in lines:
        m = pattern.match(text)
        if m is None or not m.group(2).strip():
            raise AnnotationError(
                f"{path}:{lineno}: expected '<time>{separator!s}<label>', got {text!r}"
            )
        t = parse_time(m.group(1), path, lineno)
        label = m.group(2).strip()
        if end_time is not None:
            notes.append(
                f"line {lineno} ({text!r}) after the 'end' line at {end_time} s: dropped"
            )
            continue
        if label.lower() == END_LABEL:
            end_time = t
            continue
        if times and t == times[-1]:
            notes.append(
                f"line {linenos[-1]} ({labels[-1]!r} at {t} s) repeats the onset of line "
                f"{lineno}: zero-length segment dropped"
            )
            times.pop(), labels.pop(), linenos.pop()
        times.append(t)
        labels.append(label)
        linenos.append(lineno)
    if not times:
        raise AnnotationError(f"{path}: no segments before the 'end' line")
    if end_time is None:
        if duration is None:
            raise AnnotationError(
                f"{path}: no '{END_LABEL}' line closes the last segment "
                f"({labels[-1]!r} at {times[-1]} s) and no duration was given"
            )
        end_time = float(duration)
        notes.append(
            f"no '{END_LABEL}' line: last segment ({labels[-1]!r} at {times[-1]} s, line "
            f"{linenos[-1]}) closed at the duration {end_time} s"
        )
    if strict and notes:
        raise AnnotationError(f"{path}: irregular file (strict mode): " + "; ".join(notes))
    # Sortedness and positivity are checked (with line numbers) here, before
    # validate_segments sees the intervals, so the message can point at the file's line.
    for k in range(1, len(times)):
        if times[k] < times[k - 1]:
            raise AnnotationError(
                f"{path}:{linenos[k]}: onset {times[k]} s is before the previous line's "
                f"{times[k - 1]} s (line {linenos[k - 1]})"
            )
    if end_time <= times[-1]:
        raise AnnotationError(
            f"{path}: the 'end' time {end_time} s is not after the last onset {times[-1]} s"
        )
    bounds = np.array(times + [end_time], dtype=float)
    intervals = np.column_stack([bounds[:-1], bounds[1:]])
    return intervals, labels, notes
