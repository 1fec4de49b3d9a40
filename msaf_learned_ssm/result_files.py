"""Writing one file's results: the data file (estimation JAMS or CSV) and the figure.

Everything is rendered in memory first; if a later write fails, the earlier ones of the same
call are undone, so a file counted as failed leaves none of its outputs behind.  An
estimation JAMS is keyed by the model's name, its file hash and the peak settings
(:func:`estimation_config`): two models never pass for one another.  It also records the
audio it describes (path and content hash, :func:`~msaf_learned_ssm.fileio.audio_identity`),
and a JAMS of another audio is refused (replaced with ``overwrite``): one file never mixes
the results of two recordings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from .config import PeakConfig
from .fileio import PathLike, atomic_open, audio_identity, segments_csv

__all__ = ["estimation_config", "write_results"]


def estimation_config(identity: dict, peaks: PeakConfig, sync: str = "frame",
                      beats: str = "package") -> dict:
    """The settings an estimation records: model name and SHA-256, peak picking, sync mode,
    beat tracker (``"package"`` or ``"madmom"``)."""
    return {"ssm_model": identity["name"], "ssm_model_sha256": identity["sha256"],
            **{f"ssm_peak_{k}": v for k, v in peaks.to_dict().items()}, "ssm_sync": sync,
            "ssm_beats": beats}


def write_results(plan, result, identity: dict, peaks: PeakConfig, labels: bool = True,
                  reference: Optional[np.ndarray] = None, overwrite: bool = False,
                  audio: Optional[PathLike] = None) -> None:
    """Write the outputs of one analysed file as ``plan`` says.

    Parameters
    ----------
    plan : OutputPlan
        ``data`` (``.jams``/``.csv`` or None) and ``plot`` (``.png`` or None) paths.
    result : Analysis
    identity : dict
        ``name`` and ``sha256`` of the model (``Analyzer.identity``).
    peaks : PeakConfig
        The peak settings used (recorded in the JAMS).
    labels : bool
        Label the segments by clustering the learned SSM.
    reference : np.ndarray, optional
        Reference boundary times (s) drawn on the figure.
    overwrite : bool
        Replace an existing CSV/PNG, and a JAMS of another audio (a JAMS of this audio is
        always updated, never replaced).
    audio : path, optional
        The input file, recorded in the JAMS (default ``result.source``).

    Raises
    ------
    LearnedSSMError, OSError
        After undoing this call's earlier writes.
    """
    seg_labels = result.labels() if labels else None
    png = None
    if plan.plot is not None:
        from .plotting import render_analysis_png

        png = render_analysis_png(result, reference)
    written: list = []
    try:
        if plan.data is not None:
            written.append(_backup(plan.data))
            _write_data(plan.data, result, seg_labels,
                        estimation_config(identity, peaks, result.sync,
                                          result.beat_tracker), overwrite,
                        audio if audio is not None else result.source)
        if png is not None:
            written.append(_backup(plan.plot))
            with atomic_open(plan.plot, "wb", overwrite=overwrite) as handle:
                handle.write(png)
    except BaseException:
        for target, previous in reversed(written):
            _restore(target, previous)
        raise


def _write_data(out_path: Path, result, seg_labels, config: dict, overwrite: bool,
                audio: Optional[PathLike]) -> None:
    if out_path.suffix.lower() == ".csv":
        with atomic_open(out_path, "w", overwrite=overwrite) as handle:
            handle.write(segments_csv(result.boundaries, seg_labels))
        return
    from msaf_learned_ssm_jams.io import write_estimation_jams

    beats = None if result.beats is None else (result.beats.times, result.beats.positions)
    source = audio_identity(audio) if audio not in (None, "<array>") else None
    write_estimation_jams(out_path, result.boundaries, labels=seg_labels,
                          duration=result.duration, algo_id="learned_ssm", config=config,
                          beats=beats, source=source, replace=overwrite,
                          beat_tool=result.beat_tracker_version or None)


def _backup(path: Path) -> tuple[Path, Optional[bytes]]:
    """(path, its current bytes or None if absent): what :func:`_restore` puts back."""
    return path, (path.read_bytes() if path.is_file() else None)


def _restore(path: Path, previous: Optional[bytes]) -> None:
    try:
        if previous is None:
            path.unlink(missing_ok=True)
        elif path.read_bytes() != previous:
            with atomic_open(path, "wb") as handle:
                handle.write(previous)
    except OSError:
        pass  # the error that made us undo is reported by the caller
