"""Convert Harmonix Set segment files (``segments/*.txt``) to JAMS.

Format (measured over all 912 files of the Harmonix Set's ``segments/``): one
``<onset seconds> <label>`` line per section, a single space between the two, labels
lower case without spaces (``chorus``, ``verse2``, ``prechorus``, ``silence``...), the last
line ``<time> end`` closing the last section. No file has CR line ends, a BOM, tabs,
trailing spaces, duplicate or unsorted onsets. The variations are:

- 591 files do not start at 0 s (the first section starts at the first downbeat, e.g.
  2.95 s); as in the Harmonix Set's own JAMS files the time before it is left
  unannotated rather than invented as a segment;
- 4 files (0287, 0292, 0318, 0653) have a second ``end`` line 5 to 46 s after the first
  (in 0318 2.8 s past the audio's end); the segmentation ends at the first ``end``;
- 2 files (0539, 0603) have no ``end`` line; the last section is closed at the track's
  duration, which must then be passed (``metadata.csv``'s ``Duration``, see
  :func:`read_harmonix_durations`).

Conventions copied from the Harmonix Set's published JAMS (``jams/*.jams``): namespace
``segment_open``, labels verbatim (lower case), ``file_metadata.duration`` the track
duration of ``metadata.csv``. Unlike those files, times are kept at full precision (they
round to milliseconds). Each repair is recorded in the annotation's sandbox under
``conversion_notes``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import jams

from .errors import AnnotationError

from ._text import parse_onset_labels
from .segments import segments_to_jams

__all__ = ["harmonix_to_jams", "read_harmonix_durations"]


def read_harmonix_durations(metadata_csv: str | Path) -> dict[str, float]:
    """Read track durations from the Harmonix Set's ``metadata.csv``.

    Returns
    -------
    dict
        ``{file stem (e.g. '0001_12step'): duration in seconds}``.
    """
    path = Path(metadata_csv)
    if not path.is_file():
        raise AnnotationError(f"{path}: file not found")
    out = {}
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"File", "Duration"} <= set(reader.fieldnames):
            raise AnnotationError(f"{path}: expected columns 'File' and 'Duration'")
        for row in reader:
            try:
                out[row["File"]] = float(row["Duration"])
            except (TypeError, ValueError):
                raise AnnotationError(
                    f"{path}: bad duration {row['Duration']!r} for {row['File']!r}"
                ) from None
    return out


def harmonix_to_jams(
    path: str | Path, duration: float | None = None, strict: bool = False
) -> jams.JAMS:
    """Convert one Harmonix ``segments/*.txt`` file to a JAMS with one segment_open annotation.

    Parameters
    ----------
    path : str or Path
        The segment file.
    duration : float or None
        Track duration in seconds (``metadata.csv``). None uses the ``end`` line's time
        (and fails for a file without one).
    strict : bool
        Raise on any irregularity instead of repairing it (see the module docstring).

    Returns
    -------
    jams.JAMS
        ``file_metadata.duration`` = ``duration`` (or the end time), annotation corpus
        ``Harmonix``, sandbox ``source_file`` and ``conversion_notes``.

    Raises
    ------
    AnnotationError
        Unreadable file, a line that is not ``<time> <label>``, or invalid segments
        (message names the file and line/segment).
    """
    path = Path(path)
    intervals, labels, notes = parse_onset_labels(path, r" +", duration, strict)
    dur = float(duration) if duration is not None else float(intervals[-1, 1])
    jam = segments_to_jams(
        intervals, labels, dur, namespace="segment_open", source=str(path),
        sandbox={"source_file": path.name, "conversion_notes": notes},
    )
    jam.annotations[-1].annotation_metadata.corpus = "Harmonix"
    jam.file_metadata.title = path.stem
    return jam
