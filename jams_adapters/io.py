"""Write JAMS files safely: atomically, and never over a reference annotation.

Two rules:

- A write goes to a temporary file in the destination's folder, which then replaces (or,
  when nothing may be overwritten, is hard-linked to) the destination, so a reader never
  sees half a file and a crash leaves the old file intact.
- A file in a folder named ``references`` (MSAF's layout: ``<dataset>/references/``)
  is a human annotation: it may be created, but is never overwritten or modified.
"""

from __future__ import annotations

import datetime
import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import jams
import numpy as np

from .errors import AnnotationError
from .fileio import atomic_open, file_lock

from .segments import DURATION_TOL, SNAP_TOL, jams_validate, segments_to_jams

__all__ = [
    "REFERENCES_DIR",
    "AnnotationExistsError",
    "is_reference_path",
    "save_jams_atomic",
    "write_estimation_jams",
    "recorded_source",
]

#: MSAF's folder name for reference annotations (msaf.config.dataset.references_dir).
REFERENCES_DIR = "references"


class AnnotationExistsError(AnnotationError, FileExistsError):
    """Refused to overwrite an existing annotation file."""


def is_reference_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` lies in a folder named :data:`REFERENCES_DIR` (symlinks resolved)."""
    resolved = Path(path).resolve()
    return REFERENCES_DIR in resolved.parent.parts or REFERENCES_DIR in Path(path).parent.parts


def save_jams_atomic(jam: jams.JAMS, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Validate ``jam`` and write it to ``path`` atomically.

    Parameters
    ----------
    jam : jams.JAMS
        Must pass ``jam.validate(strict=True)``.
    path : str or path-like
        Destination ``.jams`` file; its folder must exist.
    overwrite : bool
        Replace an existing file. Ignored for files in a ``references`` folder, which are
        never overwritten.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    AnnotationExistsError
        (an :class:`AnnotationError` and a :class:`FileExistsError`) if the file exists and
        ``overwrite`` is False, or it exists in a ``references`` folder.
    AnnotationError
        If ``jam`` does not validate or the folder does not exist.
    """
    path = Path(path)
    if not isinstance(jam, jams.JAMS):
        raise TypeError(f"expected a jams.JAMS, got {type(jam).__name__}")
    if path.exists() and is_reference_path(path):
        raise AnnotationExistsError(
            f"{path}: refusing to overwrite a reference annotation "
            f"(files under a '{REFERENCES_DIR}' folder are never overwritten)"
        )
    if path.exists() and not overwrite:
        raise AnnotationExistsError(f"{path}: file exists; pass overwrite=True to replace it")
    if not path.parent.is_dir():
        raise AnnotationError(f"{path}: folder {path.parent} does not exist")
    try:
        jams_validate(jam)
    except jams.JamsError as exc:
        raise AnnotationError(f"{path}: not writing an invalid JAMS ({str(exc).splitlines()[0]})") from None

    try:
        with atomic_open(path, "w", overwrite=overwrite and not is_reference_path(path)) as fh:
            json.dump(jam.__json__, fh, indent=2)
    except FileExistsError:
        raise AnnotationExistsError(f"{path}: file appeared while writing; not overwritten") \
            from None
    return path


def _msaf_version() -> str:
    try:
        return metadata.version("msaf")
    except metadata.PackageNotFoundError:
        return "unknown"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _boundaries_to_intervals(boundaries_sec: Any, duration: float, path: Path) -> np.ndarray:
    b = np.asarray(boundaries_sec, dtype=float).ravel()
    if b.size and not np.all(np.isfinite(b)):
        raise AnnotationError(f"{path}: boundaries are not all finite")
    if b.size and (b.min() < 0 or b.max() > duration + DURATION_TOL):
        raise AnnotationError(
            f"{path}: boundaries must lie in [0, {duration:.6g}] s, got "
            f"[{b.min():.6g}, {b.max():.6g}]"
        )
    if np.any(np.diff(b) <= 0):
        raise AnnotationError(f"{path}: boundaries must be strictly increasing")
    b = np.minimum(b, duration)
    # MSAF's estimations always span the whole track: boundaries include 0 and the end.
    if b.size == 0 or b[0] > SNAP_TOL:
        b = np.concatenate([[0.0], b])
    else:
        b[0] = 0.0
    if b[-1] < duration - SNAP_TOL:
        b = np.concatenate([b, [duration]])
    else:
        b[-1] = duration
    return np.column_stack([b[:-1], b[1:]])


def _label_strings(labels: Sequence[Any] | None, n: int, path: Path) -> list[str]:
    if labels is None:
        # MSAF writes chr(label + 65) and uses label -1 for "no label": '@'.
        return ["@"] * n
    labels = list(labels)
    if len(labels) != n:
        raise AnnotationError(f"{path}: {n} segments but {len(labels)} labels")
    out = []
    for lab in labels:
        if isinstance(lab, str):
            out.append(lab)
        elif isinstance(lab, (int, np.integer, float, np.floating)) and float(lab).is_integer():
            out.append(chr(int(lab) + 65))  # MSAF's integer-label convention
        else:
            raise AnnotationError(f"{path}: label {lab!r} is neither a str nor an integer")
    return out


def recorded_source(jam: jams.JAMS) -> dict:
    """The audio an estimation file describes, as recorded in its
    ``file_metadata.identifiers`` (``audio_path``, ``audio_sha256``); {} if none is."""
    ids = jam.file_metadata.identifiers
    values = dict(vars(ids)) if ids is not None else {}
    return {k: values[k] for k in ("audio_path", "audio_sha256") if values.get(k)}


def _other_source(path: Path, jam: jams.JAMS, source: dict | None) -> str | None:
    """Why the estimation file at ``path`` describes other audio than ``source`` (None if it
    describes this audio, or records none: an older file is adopted)."""
    old = recorded_source(jam)
    if not source or not old.get("audio_sha256") \
            or old["audio_sha256"] == source.get("audio_sha256"):
        return None
    return (f"{path} holds the estimations of {old.get('audio_path', '?')} (sha256 "
            f"{old['audio_sha256'][:12]}), not of {source.get('audio_path', '?')} (sha256 "
            f"{str(source.get('audio_sha256'))[:12]})")


def _same_estimation(ann: jams.Annotation, sandbox: dict) -> bool:
    """Whether ``ann`` is an earlier run of the same algorithm with the same parameters."""
    if ann.namespace not in ("segment_open", "beat"):
        return False
    old = dict(vars(ann.sandbox))
    keys = set(sandbox) - {"timestamp"}
    return all(k in old and old[k] == sandbox[k] for k in keys)


def write_estimation_jams(
    path: str | os.PathLike,
    boundaries_sec: Any,
    labels: Sequence[Any] | None = None,
    *,
    duration: float,
    algo_id: str = "learned_ssm",
    config: dict | None = None,
    labels_id: str | None = None,
    beats: tuple[Any, Any] | None = None,
    source: dict | None = None,
    replace: bool = False,
    beat_tool: str | None = None,
) -> Path:
    """Write (or update) an MSAF estimation file, atomically.

    Follows ``msaf.input_output.save_estimations``: one ``segment_open`` annotation whose
    ``annotation_metadata`` has ``version`` (MSAF's) and ``data_source="MSAF"``, and whose
    sandbox holds ``boundaries_id``, ``labels_id``, ``timestamp``, ``hier=False`` and the
    algorithm's ``config`` keys, so ``msaf.input_output.read_estimations`` finds it. An
    existing file keeps its other annotations; an annotation of the same algorithm and
    config is replaced.

    Parameters
    ----------
    path : str or path-like
        The estimation ``.jams`` file (MSAF: ``<dataset>/estimations/<track>.jams``).
    boundaries_sec : array-like, shape (k,)
        Boundary times in seconds, strictly increasing. 0 and ``duration`` are added if
        missing, so segments cover the whole track as in MSAF.
    labels : sequence of str or int, or None
        One label per segment (``k + 1`` minus what was added). Integers are written the
        MSAF way, ``chr(label + 65)``; None writes MSAF's "no label" ``'@'``.
    duration : float
        Audio duration in seconds.
    algo_id : str
        Boundary algorithm identifier (sandbox ``boundaries_id``).
    config : dict or None
        The algorithm's parameters (JSON-serialisable), stored flat in the sandbox.
    labels_id : str or None
        Label algorithm identifier.
    beats : (times, positions) or None
        The beats the algorithm estimated: times (s) and positions in the bar (1 =
        downbeat), written as a ``beat`` annotation with the same sandbox (replaced with
        the segments on a rerun).
    source : dict or None
        The audio the estimation describes: ``audio_path`` and ``audio_sha256`` (of the
        file's bytes), recorded in ``file_metadata.identifiers``. An existing file that
        records another audio (another hash) is refused, so that one file never mixes the
        estimations of two recordings.
    replace : bool
        Replace an existing file of another audio (its annotations are dropped) instead of
        refusing it.
    beat_tool : str or None
        The tracker that made ``beats`` and its version (e.g. ``"package: beats.pt
        sha256:..., decoder 2"``), written in the beat annotation's ``annotation_tools``;
        default the sandbox's ``ssm_beats``.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    AnnotationError
        ``path`` is in a ``references`` folder, the existing file is not a loadable JAMS,
        describes another audio file (``source``; unless ``replace``), its duration
        disagrees with ``duration``, or the boundaries/labels are invalid.
    """
    path = Path(path)
    if is_reference_path(path):
        raise AnnotationError(
            f"{path}: refusing to write estimations into a '{REFERENCES_DIR}' folder"
        )
    if not (isinstance(duration, (int, float, np.integer, np.floating)) and np.isfinite(duration) and duration > 0):
        raise AnnotationError(f"{path}: duration must be finite and > 0, got {duration!r}")
    duration = float(duration)
    config = dict(config or {})
    reserved = {"boundaries_id", "labels_id", "timestamp"} & set(config)
    if reserved:
        raise ValueError(f"config may not set {sorted(reserved)}")
    try:
        # Round-trip through JSON: numpy scalars/arrays become plain numbers and lists.
        config = json.loads(json.dumps(config, default=_json_default))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config is not JSON-serialisable: {exc}") from None

    intervals = _boundaries_to_intervals(boundaries_sec, duration, path)
    label_strs = _label_strings(labels, len(intervals), path)

    sandbox: dict[str, Any] = {"boundaries_id": algo_id, "labels_id": labels_id, "hier": False}
    sandbox.update(config)
    sandbox["timestamp"] = datetime.datetime.today().strftime("%Y/%m/%d %H:%M:%S")

    # Read-modify-write under a lock (the hidden file .NAME.lock, removed when done): two
    # processes writing the same estimation file (MSAF batch workers, two CLI runs) must
    # not lose each other's annotations.
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path):
        return _update_estimation(path, intervals, label_strs, duration, sandbox, beats,
                                  source, replace, beat_tool)


def _load_existing(path: Path, duration: float, source: dict | None,
                   replace: bool) -> jams.JAMS | None:
    """The estimation file at ``path`` to update; None when there is none, or when it
    describes another audio and ``replace`` (AnnotationError if not ``replace``)."""
    if not path.exists():
        return None
    try:
        jam = jams.load(str(path), validate=False)
    except Exception as exc:  # noqa: BLE001 - any failure means: do not touch it
        raise AnnotationError(
            f"{path}: existing estimation file cannot be loaded ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); not modified"
        ) from None
    other = _other_source(path, jam, source)
    if other is not None:
        if replace:
            return None
        raise AnnotationError(f"{other}: not modified; replace it (--overwrite) or write "
                              "elsewhere")
    old_dur = jam.file_metadata.duration
    if old_dur is not None and abs(old_dur - duration) > DURATION_TOL:
        raise AnnotationError(
            f"{path}: existing file's duration {old_dur:.6g} s disagrees with "
            f"{duration:.6g} s; not modified"
        )
    return jam


def _update_estimation(path: Path, intervals: np.ndarray, label_strs: list, duration: float,
                       sandbox: dict, beats: tuple[Any, Any] | None = None,
                       source: dict | None = None, replace: bool = False,
                       beat_tool: str | None = None) -> Path:
    """Add the annotation to the estimation file at ``path`` (the caller holds its lock)."""
    jam = _load_existing(path, duration, source, replace)
    if jam is not None:
        keep = [a for a in jam.annotations if not _same_estimation(a, sandbox)]
        jam.annotations = jams.AnnotationArray(annotations=keep)
    else:
        jam = jams.JAMS()
        jam.file_metadata.duration = duration
    overwrite = path.exists()
    if source:
        ids = jam.file_metadata.identifiers
        jam.file_metadata.identifiers = jams.Sandbox(
            **{**(dict(vars(ids)) if ids is not None else {}),
               **{k: source[k] for k in ("audio_path", "audio_sha256") if source.get(k)}})

    segments_to_jams(
        intervals, label_strs, duration, namespace="segment_open", jam=jam,
        sandbox=sandbox, source=str(path),
    )
    ann = jam.annotations[-1]
    ann.annotation_metadata.version = _msaf_version()
    ann.annotation_metadata.data_source = "MSAF"
    ann.annotation_metadata.annotation_tools = "msaf-learned-ssm"
    if beats is not None:
        from .beats import beats_to_annotation

        beat_ann = beats_to_annotation(beats[0], beats[1], duration,
                                       annotator=sandbox["boundaries_id"], sandbox=sandbox)
        beat_ann.annotation_metadata.version = _msaf_version()
        beat_ann.annotation_metadata.data_source = "MSAF"
        beat_ann.annotation_metadata.annotation_tools = (
            f"msaf-learned-ssm (beat tracker: "
            f"{beat_tool or sandbox.get('ssm_beats', 'package')})")
        jam.annotations.append(beat_ann)
    return save_jams_atomic(jam, path, overwrite=overwrite)
