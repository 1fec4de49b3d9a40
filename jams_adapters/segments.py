"""Validate, read and build flat segment annotations held in JAMS.

A *segmentation* here is a pair ``(intervals, labels)``:

- ``intervals``: ``np.ndarray`` of shape ``(n, 2)``, float seconds, one ``[start, end)``
  row per segment, sorted by start, not overlapping;
- ``labels``: ``list[str]`` of length ``n``, none empty.

This is the form mir_eval's segment metrics take, and the form MSAF reads references in.

Tolerances (all in seconds):

- :data:`SNAP_TOL` = 1e-3: overlaps or gaps between consecutive segments up to this long
  are rounding noise (annotation tools write times with 3 to 6 decimals); they are
  accepted and, when reading, snapped shut (the earlier segment's end moves to the later
  segment's start). Longer gaps are legal JAMS (unannotated time) and are kept; longer
  overlaps are an error.
- :data:`DURATION_TOL` = 0.5: how far a segment may end past the audio's duration.
  Durations of the same recording disagree by up to a few hundred milliseconds between
  decoders (MP3 encoder padding, metadata rounding); Harmonix's own annotations end up to
  0.155 s past the durations in its metadata.csv. Ends within the tolerance are clipped to
  the duration when reading; a segment that *starts* at or after the duration is an error.
"""

from __future__ import annotations

import gzip
import json
import os
import warnings
from pathlib import Path
from typing import Any, Sequence, Union

import jams
import numpy as np

from .errors import AnnotationError

__all__ = [
    "SNAP_TOL",
    "DURATION_TOL",
    "NAMESPACE_PRIORITY",
    "validate_segments",
    "snap_segments",
    "read_segments",
    "list_segment_annotations",
    "segments_to_jams",
]

SNAP_TOL = 1e-3
DURATION_TOL = 0.5
# Files rounded to milliseconds (Harmonix's JAMS) overlap by exactly SNAP_TOL, give or
# take float error: the tolerance is inclusive up to this.
_EPS = 1e-9

#: Namespaces read_segments understands, in the order it prefers them when the caller
#: names none: the open vocabulary first (what MSAF and most corpora use), then SALAMI's
#: coarse, function and fine levels, then hierarchies.
NAMESPACE_PRIORITY = (
    "segment_open",
    "segment_salami_upper",
    "segment_salami_function",
    "segment_salami_lower",
    "multi_segment",
)

PathOrJams = Union[str, Path, jams.JAMS]


def _fmt_seg(i: int, start: float, end: float) -> str:
    return f"segment {i} [{start:.6g}, {end:.6g}]"


def jams_validate(obj: "jams.JAMS | jams.Annotation") -> None:
    """``obj.validate(strict=True)``, without the DeprecationWarning that the jams package's
    call into jsonschema ("Passing a schema to Validator.iter_errors is deprecated") gives
    on every validation: filtered for this call only, other warnings pass."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Passing a schema to Validator.iter_errors",
                                category=DeprecationWarning)
        obj.validate(strict=True)


def validate_segments(
    intervals: Any,
    labels: Sequence[Any],
    duration: float | None = None,
    source: str = "<unknown>",
    *,
    allow_gaps: bool = True,
) -> None:
    """Check that a segmentation is usable as a reference; raise if not.

    Parameters
    ----------
    intervals : array-like, shape (n, 2)
        ``[start, end]`` of each segment, in seconds.
    labels : sequence of str, length n
        One label per segment.
    duration : float or None
        Duration of the audio in seconds, when known. Segments may end up to
        :data:`DURATION_TOL` past it; none may start at or after it.
    source : str
        What the segments came from (a file path), named in every error message.
    allow_gaps : bool
        If False, a gap longer than :data:`SNAP_TOL` between consecutive segments is an
        error too (gaps at the start and end of the track are always allowed).

    Raises
    ------
    AnnotationError
        If there are no segments, the lengths differ, a time is not finite or negative, a
        segment ends at or before its start, starts are not increasing, two segments
        overlap by more than :data:`SNAP_TOL`, a segment lies beyond ``duration`` or a label
        is not a non-empty string. The message names ``source`` and the first offending
        segment's index and times.
    """
    try:
        iv = np.asarray(intervals, dtype=float)
    except (TypeError, ValueError) as exc:
        raise AnnotationError(f"{source}: segment times are not numbers ({exc})") from None
    if iv.ndim != 2 or iv.shape[1] != 2:
        raise AnnotationError(
            f"{source}: intervals must have shape (n, 2), got {iv.shape}"
        )
    n = iv.shape[0]
    if n == 0:
        raise AnnotationError(f"{source}: no segments")
    if len(labels) != n:
        raise AnnotationError(
            f"{source}: {n} intervals but {len(labels)} labels"
        )
    if duration is not None and not (np.isfinite(duration) and duration > 0):
        raise AnnotationError(f"{source}: duration must be finite and > 0, got {duration!r}")

    for i in range(n):
        start, end = iv[i]
        if not (np.isfinite(start) and np.isfinite(end)):
            raise AnnotationError(f"{source}: {_fmt_seg(i, start, end)} has a non-finite time")
        if start < 0:
            raise AnnotationError(f"{source}: {_fmt_seg(i, start, end)} starts before 0 s")
        if end <= start:
            raise AnnotationError(
                f"{source}: {_fmt_seg(i, start, end)} ends at or before its start"
            )
        if i > 0:
            prev_start, prev_end = iv[i - 1]
            if start <= prev_start:
                raise AnnotationError(
                    f"{source}: segments not sorted: {_fmt_seg(i, start, end)} starts at or "
                    f"before {_fmt_seg(i - 1, prev_start, prev_end)}"
                )
            if start < prev_end - SNAP_TOL - _EPS:
                raise AnnotationError(
                    f"{source}: {_fmt_seg(i, start, end)} overlaps "
                    f"{_fmt_seg(i - 1, prev_start, prev_end)} by {prev_end - start:.6g} s"
                )
            if not allow_gaps and start > prev_end + SNAP_TOL + _EPS:
                raise AnnotationError(
                    f"{source}: gap of {start - prev_end:.6g} s between "
                    f"{_fmt_seg(i - 1, prev_start, prev_end)} and {_fmt_seg(i, start, end)}"
                )
        if duration is not None:
            if start >= duration:
                raise AnnotationError(
                    f"{source}: {_fmt_seg(i, start, end)} starts at or after the end of "
                    f"the audio ({duration:.6g} s)"
                )
            if end > duration + DURATION_TOL:
                raise AnnotationError(
                    f"{source}: {_fmt_seg(i, start, end)} ends {end - duration:.6g} s after "
                    f"the end of the audio ({duration:.6g} s; tolerance {DURATION_TOL} s)"
                )
        label = labels[i]
        if not isinstance(label, str):
            raise AnnotationError(
                f"{source}: label of {_fmt_seg(i, start, end)} is {type(label).__name__} "
                f"{label!r}, not a string"
            )
        if not label.strip():
            raise AnnotationError(f"{source}: label of {_fmt_seg(i, start, end)} is empty")


def snap_segments(intervals: Any, duration: float | None = None) -> np.ndarray:
    """Close sub-tolerance gaps and overlaps, and clip the last ends to the duration.

    Call on segments that passed :func:`validate_segments`.

    Parameters
    ----------
    intervals : array-like, shape (n, 2)
        Valid segment intervals in seconds.
    duration : float or None
        Audio duration in seconds; ends past it are clipped to it.

    Returns
    -------
    np.ndarray, shape (n, 2)
        A new float array: each end within :data:`SNAP_TOL` of the next start is set to
        that start, a first start below :data:`SNAP_TOL` is set to 0, and ends are
        ``min(end, duration)``.
    """
    iv = np.array(intervals, dtype=float, copy=True).reshape(-1, 2)
    if iv.shape[0] and iv[0, 0] < SNAP_TOL:
        iv[0, 0] = 0.0
    close = np.abs(iv[1:, 0] - iv[:-1, 1]) <= SNAP_TOL + _EPS
    iv[:-1, 1][close] = iv[1:, 0][close]
    if duration is not None:
        iv[:, 1] = np.minimum(iv[:, 1], duration)
    return iv


# ---------------------------------------------------------------------------------------
# Loading


def _load_jams_file(path: Path, source: str) -> tuple[jams.JAMS, dict]:
    """Load and validate a JAMS file; return it and its raw JSON (for file order)."""
    if not path.exists():
        raise AnnotationError(f"{source}: file not found")
    if not path.is_file():
        raise AnnotationError(f"{source}: not a regular file")
    try:
        raw = path.read_bytes()
        if path.suffix.lower() == ".jamz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise AnnotationError(f"{source}: cannot read file ({exc})") from None
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AnnotationError(f"{source}: not a JSON file ({exc})") from None
    if not isinstance(obj, dict):
        raise AnnotationError(
            f"{source}: JSON but not JAMS (top level is {type(obj).__name__}, not an object)"
        )
    try:
        # Same as jams.load(path) but without reading the file twice.
        jam = jams.JAMS(**obj)
        jams_validate(jam)
    except (jams.JamsError, TypeError, ValueError, KeyError, AttributeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AnnotationError(f"{source}: JSON but not valid JAMS ({msg})") from None
    return jam, obj


def _resolve(jams_path_or_obj: PathOrJams, source: str | None) -> tuple[jams.JAMS, dict | None, str]:
    if isinstance(jams_path_or_obj, jams.JAMS):
        return jams_path_or_obj, None, source or "<JAMS object>"
    if isinstance(jams_path_or_obj, (str, Path)):
        path = Path(jams_path_or_obj)
        src = source or str(path)
        jam, raw = _load_jams_file(path, src)
        return jam, raw, src
    raise TypeError(
        f"expected a path or a jams.JAMS, got {type(jams_path_or_obj).__name__}"
    )


def _annotator_name(ann: jams.Annotation) -> str | None:
    # jams leaves an empty Curator-less JObject when no annotator was recorded.
    name = getattr(ann.annotation_metadata.annotator, "name", None)
    return str(name) if name else None


def _levels(ann: jams.Annotation) -> list[int]:
    return sorted({int(obs.value["level"]) for obs in ann.data})


def list_segment_annotations(jam: PathOrJams) -> list[dict]:
    """Describe the segment annotations of a JAMS.

    Parameters
    ----------
    jam : jams.JAMS or path
        The JAMS (a path is loaded and validated).

    Returns
    -------
    list of dict
        One dict per annotation in a namespace of :data:`NAMESPACE_PRIORITY`, in file
        order, with keys ``namespace``, ``annotator`` (name or None), ``index`` (position
        among the annotations of that namespace, what ``annotator=int`` selects),
        ``position`` (position in ``jam.annotations``), ``n_segments`` and ``levels``
        (multi_segment only; otherwise None).
    """
    jam, _, _ = _resolve(jam, None)
    out = []
    counts: dict[str, int] = {}
    for pos, ann in enumerate(jam.annotations):
        ns = ann.namespace
        if ns not in NAMESPACE_PRIORITY:
            continue
        idx = counts.get(ns, 0)
        counts[ns] = idx + 1
        out.append(
            {
                "namespace": ns,
                "annotator": _annotator_name(ann),
                "index": idx,
                "position": pos,
                "n_segments": len(ann.data),
                "levels": _levels(ann) if ns == "multi_segment" else None,
            }
        )
    return out


def _raw_times(raw: dict | None, position: int) -> np.ndarray | None:
    """Observation (time, duration) pairs in *file* order (jams sorts them on load)."""
    if raw is None:
        return None
    try:
        data = raw["annotations"][position]["data"]
        if isinstance(data, dict):  # column ("sparse") layout
            return np.column_stack([data["time"], data["duration"]]).astype(float)
        return np.array([[d["time"], d["duration"]] for d in data], dtype=float).reshape(-1, 2)
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def _check_read_arguments(namespace: str | None, annotator: Any, level: Any) -> str | None:
    """Validate :func:`read_segments`' arguments; returns the namespace to read."""
    if namespace is not None and namespace not in NAMESPACE_PRIORITY:
        raise ValueError(f"namespace must be one of {NAMESPACE_PRIORITY}, got {namespace!r}")
    if level is not None:
        if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level < 0:
            raise ValueError(f"level must be an int >= 0, got {level!r}")
        if namespace is None:
            namespace = "multi_segment"
        elif namespace != "multi_segment":
            raise ValueError(f"level applies to multi_segment only, not {namespace!r}")
    if annotator is not None and (
        isinstance(annotator, bool) or not isinstance(annotator, (str, int, np.integer))
    ):
        raise ValueError(f"annotator must be a str, an int or None, got {annotator!r}")
    return namespace


def _choose_annotation(jam: jams.JAMS, src: str, namespace: str | None,
                       annotator: Any) -> tuple[str, dict]:
    """(namespace, entry of :func:`list_segment_annotations`) to read, or AnnotationError
    listing what the file holds."""
    found = list_segment_annotations(jam)
    others = sorted({a.namespace for a in jam.annotations})
    held = ", ".join(others) if others else "no annotations"
    if namespace is None:
        present = {d["namespace"] for d in found}
        namespace = next((ns for ns in NAMESPACE_PRIORITY if ns in present), None)
        if namespace is None:
            raise AnnotationError(f"{src}: no segment annotation (looked for "
                                  f"{', '.join(NAMESPACE_PRIORITY)}; the file has: {held})")
    candidates = [d for d in found if d["namespace"] == namespace]
    if not candidates:
        raise AnnotationError(f"{src}: no {namespace} annotation (the file has: {held})")
    if annotator is None:
        entry = candidates[0]
    elif isinstance(annotator, str):
        entry = next((d for d in candidates if d["annotator"] == annotator), None)
    else:
        entry = candidates[int(annotator)] if 0 <= int(annotator) < len(candidates) else None
    if entry is None:
        names = [f"{d['index']}: {d['annotator']!r}" for d in candidates]
        raise AnnotationError(f"{src}: no {namespace} annotation for annotator {annotator!r} "
                              f"(available: {', '.join(names)})")
    return namespace, entry


def _level_observations(ann: jams.Annotation, entry: dict, src: str, level: int | None
                        ) -> tuple[np.ndarray, list, str]:
    """Intervals, labels and a description of one level of a ``multi_segment`` annotation."""
    lev = 0 if level is None else int(level)
    obs = [o for o in ann.data if int(o.value["level"]) == lev]
    if not obs:
        raise AnnotationError(f"{src}: multi_segment annotation {entry['index']} has no level "
                              f"{lev} (levels: {entry['levels']})")
    intervals = np.array([[o.time, o.time + o.duration] for o in obs], dtype=float)
    return intervals, [o.value["label"] for o in obs], \
        f"{src} (multi_segment #{entry['index']}, level {lev})"


def _flat_observations(ann: jams.Annotation, entry: dict, src: str, namespace: str,
                       raw: dict | None) -> tuple[np.ndarray, list, str]:
    """Intervals, labels and a description of a flat annotation; its order in the file is
    checked (jams sorts observations on load, but an unsorted file is still a broken file)."""
    file_order = _raw_times(raw, entry["position"])
    if file_order is not None and len(file_order) > 1:
        bad = np.flatnonzero(np.diff(file_order[:, 0]) < 0)
        if bad.size:
            i = int(bad[0]) + 1
            raise AnnotationError(
                f"{src} ({namespace} #{entry['index']}): segments not sorted in the file: "
                f"segment {i} starts at {file_order[i, 0]:.6g} s, before segment {i - 1} "
                f"at {file_order[i - 1, 0]:.6g} s")
    intervals = np.array([[o.time, o.time + o.duration] for o in ann.data],
                         dtype=float).reshape(-1, 2)
    return intervals, [o.value for o in ann.data], f"{src} ({namespace} #{entry['index']})"


def check_reference_fits(reference: Any, intervals: Any, duration: float,
                         audio: Any) -> None:
    """AnnotationError unless the segments ``intervals`` of ``reference`` (a JAMS path) fit
    an audio of ``duration`` s: they must not run past it (``DURATION_TOL``), and the
    duration the JAMS states, if any, must match within ``max(DURATION_TOL, 1 %)``."""
    intervals = np.asarray(intervals, dtype=float).reshape(-1, 2)
    end = float(intervals[-1, 1]) if len(intervals) else 0.0
    name = os.path.basename(os.fspath(audio))
    if end > duration + DURATION_TOL:
        raise AnnotationError(f"{reference}: the reference runs to {end:.1f} s but {name} "
                              f"lasts {duration:.1f} s (tolerance {DURATION_TOL} s): not the "
                              "reference of this audio?")
    try:
        with open(reference, encoding="utf-8") as handle:
            stated = json.load(handle).get("file_metadata", {}).get("duration")
    except (OSError, ValueError, AttributeError):
        stated = None
    if isinstance(stated, (int, float)) and abs(float(stated) - duration) > max(
            DURATION_TOL, 0.01 * duration):
        raise AnnotationError(f"{reference}: the reference says the audio lasts "
                              f"{float(stated):.1f} s but {name} lasts {duration:.1f} s")


def read_segments(
    jams_path_or_obj: PathOrJams,
    namespace: str | None = None,
    annotator: str | int | None = None,
    level: int | None = None,
    source: str | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Read one flat segmentation from a JAMS file or object.

    Parameters
    ----------
    jams_path_or_obj : str, Path or jams.JAMS
        A ``.jams`` (or gzipped ``.jamz``) file, or a loaded JAMS.
    namespace : str or None
        One of :data:`NAMESPACE_PRIORITY`. None picks the first of those present, in that
        order (if ``level`` is given, None means ``multi_segment``).
    annotator : str, int or None
        Which annotation of the namespace: a str matches
        ``annotation_metadata.annotator.name``, an int is the index among that namespace's
        annotations (file order); None takes the first.
    level : int or None
        For ``multi_segment`` only: the hierarchy level to read; None reads level 0 (the
        coarsest).
    source : str or None
        Name used in error messages; defaults to the path (or ``"<JAMS object>"``).

    Returns
    -------
    intervals : np.ndarray, shape (n, 2)
        Segment ``[start, end]`` in seconds, sorted, gaps/overlaps below
        :data:`SNAP_TOL` snapped shut, ends clipped to the file's duration.
    labels : list of str, length n

    Raises
    ------
    AnnotationError
        The file is missing, not JSON, not valid JAMS, holds no annotation of the wanted
        namespace/annotator/level (the message lists what it does hold), or the segments
        fail :func:`validate_segments` (checked against the file's duration).
    ValueError
        Bad arguments (unknown namespace, ``level`` with another namespace, wrong types).
    """
    namespace = _check_read_arguments(namespace, annotator, level)
    jam, raw, src = _resolve(jams_path_or_obj, source)
    chosen_ns, entry = _choose_annotation(jam, src, namespace, annotator)
    ann = jam.annotations[entry["position"]]
    duration = jam.file_metadata.duration
    if chosen_ns == "multi_segment":
        intervals, labels, where = _level_observations(ann, entry, src, level)
    else:
        intervals, labels, where = _flat_observations(ann, entry, src, chosen_ns, raw)
    validate_segments(intervals, labels, duration=duration, source=where)
    return snap_segments(intervals, duration), list(labels)


# ---------------------------------------------------------------------------------------
# Building


def segments_to_jams(
    intervals: Any,
    labels: Sequence[str],
    duration: float,
    namespace: str = "segment_open",
    annotator: str | None = None,
    jam: jams.JAMS | None = None,
    sandbox: dict | None = None,
    *,
    level: int = 0,
    source: str = "<segments_to_jams>",
) -> jams.JAMS:
    """Build a JAMS annotation from a segmentation; append it to ``jam`` or a new JAMS.

    Parameters
    ----------
    intervals : array-like, shape (n, 2)
        Segment ``[start, end]`` in seconds (validated with :func:`validate_segments`).
    labels : sequence of str, length n
    duration : float
        Audio duration in seconds; becomes ``file_metadata.duration`` of a new JAMS.
    namespace : str
        One of :data:`NAMESPACE_PRIORITY`. For ``multi_segment`` every segment is written
        at hierarchy level ``level``.
    annotator : str or None
        Stored as ``annotation_metadata.annotator.name``.
    jam : jams.JAMS or None
        Append to this JAMS (modified in place, and returned). Its duration must agree
        with ``duration`` to within :data:`DURATION_TOL`; a missing duration is set.
    sandbox : dict or None
        JSON-serialisable extra data stored in the annotation's sandbox.
    level : int
        Hierarchy level, for ``multi_segment`` only.
    source : str
        Name used in error messages.

    Returns
    -------
    jams.JAMS
        The JAMS holding the new annotation (validated).

    Raises
    ------
    AnnotationError
        Invalid segments, or a JAMS whose duration disagrees, or labels the namespace's
        schema rejects (e.g. lower-case labels in ``segment_salami_upper``).
    """
    if namespace not in NAMESPACE_PRIORITY:
        raise ValueError(f"namespace must be one of {NAMESPACE_PRIORITY}, got {namespace!r}")
    validate_segments(intervals, labels, duration=duration, source=source)
    iv = snap_segments(intervals, duration)
    if jam is None:
        jam = jams.JAMS()
        jam.file_metadata.duration = float(duration)
    elif jam.file_metadata.duration is None:
        jam.file_metadata.duration = float(duration)
    elif abs(jam.file_metadata.duration - duration) > DURATION_TOL:
        raise AnnotationError(
            f"{source}: duration {duration:.6g} s disagrees with the JAMS's "
            f"file_metadata.duration {jam.file_metadata.duration:.6g} s"
        )
    ann = jams.Annotation(namespace=namespace)
    if annotator is not None:
        ann.annotation_metadata.annotator.name = str(annotator)
    if sandbox:
        try:
            json.dumps(sandbox)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"sandbox is not JSON-serialisable: {exc}") from None
        ann.sandbox.update(**sandbox)
    for (start, end), label in zip(iv, labels):
        value: Any = {"label": label, "level": int(level)} if namespace == "multi_segment" else label
        ann.append(time=float(start), duration=float(end - start), value=value, confidence=None)
    try:
        jams_validate(ann)
    except jams.JamsError as exc:
        raise AnnotationError(
            f"{source}: labels not allowed in {namespace} ({str(exc).splitlines()[0]})"
        ) from None
    jam.annotations.append(ann)
    return jam
