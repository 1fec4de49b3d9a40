"""Beat annotations in JAMS (``beat`` namespace: value = position in the bar, 1 = downbeat)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import jams
import numpy as np

from .errors import AnnotationError


def read_beats(jam: Union[jams.JAMS, str, os.PathLike], annotator: Optional[str] = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Beat times and bar positions of the first (or ``annotator``'s) ``beat`` annotation.

    Parameters
    ----------
    jam : jams.JAMS or path
    annotator : str, optional
        ``annotation_metadata.annotator.name`` to select.

    Returns
    -------
    times : np.ndarray, shape (n_beats,)
        Beat times (s), increasing.
    positions : np.ndarray of int, shape (n_beats,)
        Position of each beat in its bar (1 = downbeat); 0 where the annotation gives none.

    Raises
    ------
    AnnotationError
        No matching ``beat`` annotation, or times that are not finite and increasing.
    """
    source = str(jam) if not isinstance(jam, jams.JAMS) else "<JAMS>"
    if not isinstance(jam, jams.JAMS):
        try:
            jam = jams.load(str(jam), validate=False)
        except Exception as exc:  # noqa: BLE001 - jams raises many types on bad files
            raise AnnotationError(f"{source}: cannot read JAMS ({exc})") from None
    for ann in jam.search(namespace="beat"):
        name = getattr(ann.annotation_metadata.annotator, "name", None)
        if annotator is not None and name != annotator:
            continue
        times = np.array([float(o.time) for o in ann.data])
        positions = np.array([int(o.value) if o.value is not None else 0 for o in ann.data],
                             dtype=int)
        if not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0):
            raise AnnotationError(f"{source}: beat times must be finite and increasing")
        return times, positions
    who = f" by {annotator!r}" if annotator else ""
    raise AnnotationError(f"{source}: no beat annotation{who}")


def beats_to_annotation(times: np.ndarray, positions: np.ndarray, duration: float,
                        annotator: str, sandbox: Optional[dict] = None) -> jams.Annotation:
    """A ``beat`` annotation of beat times (s) and bar positions (1 = downbeat)."""
    times = np.asarray(times, dtype=float)
    positions = np.asarray(positions, dtype=int)
    if times.shape != positions.shape or times.ndim != 1:
        raise ValueError(f"times and positions must be 1-D of one length, got "
                         f"{times.shape} and {positions.shape}")
    ann = jams.Annotation(namespace="beat", time=0, duration=float(duration))
    for t, p in zip(times, positions):
        ann.append(time=float(t), duration=0.0, value=int(p), confidence=None)
    ann.annotation_metadata = jams.AnnotationMetadata(annotator={"name": annotator})
    if sandbox:
        ann.sandbox.update(**sandbox)
    return ann
