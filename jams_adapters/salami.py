"""Convert SALAMI-style ``<onset>\\t<label>`` text files to JAMS.

SALAMI's parsed annotation files (``textfile1_uppercase.txt``, ``..._lowercase.txt``,
``..._functions.txt``) list one ``<onset seconds><TAB><label>`` per line, the last line's
label ``end`` (any case) closing the last segment; ``Silence`` segments are ordinary
segments. Repairs (several ``end`` lines, none, repeated onsets) follow
:func:`msaf_learned_ssm_jams._text.parse_onset_labels` and are noted in the sandbox.
"""

from __future__ import annotations

from pathlib import Path

import jams

from ._text import parse_onset_labels
from .segments import NAMESPACE_PRIORITY, segments_to_jams

__all__ = ["salami_txt_to_jams"]

_NAMESPACE_BY_SUFFIX = {
    "_uppercase": "segment_salami_upper",
    "_lowercase": "segment_salami_lower",
    "_functions": "segment_salami_function",
}


def salami_txt_to_jams(
    path: str | Path,
    duration: float | None = None,
    namespace: str | None = None,
    strict: bool = False,
) -> jams.JAMS:
    """Convert a SALAMI-style tab-separated onset list to a JAMS.

    Parameters
    ----------
    path : str or Path
        The text file.
    duration : float or None
        Track duration in seconds; None uses the ``end`` line's time.
    namespace : str or None
        None infers it from SALAMI's file names (``*_uppercase`` -> segment_salami_upper,
        ``*_lowercase`` -> segment_salami_lower, ``*_functions`` ->
        segment_salami_function, anything else -> segment_open).
    strict : bool
        Raise on any irregularity instead of repairing it.

    Returns
    -------
    jams.JAMS

    Raises
    ------
    AnnotationError
        Unreadable/malformed file, invalid segments, or labels the namespace rejects.
    """
    path = Path(path)
    if namespace is None:
        namespace = next(
            (ns for suf, ns in _NAMESPACE_BY_SUFFIX.items() if path.stem.endswith(suf)),
            "segment_open",
        )
    if namespace not in NAMESPACE_PRIORITY or namespace == "multi_segment":
        raise ValueError(f"unsupported namespace {namespace!r}")
    intervals, labels, notes = parse_onset_labels(path, r"\t+ *", duration, strict)
    if namespace == "segment_salami_function":
        labels = [lab.lower() for lab in labels]  # the schema's vocabulary is lower case
    dur = float(duration) if duration is not None else float(intervals[-1, 1])
    return segments_to_jams(
        intervals, labels, dur, namespace=namespace, source=str(path),
        sandbox={"source_file": path.name, "conversion_notes": notes},
    )
