"""Where boundaries may fall: novelty peaks (frame), beats, or bar lines."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import ConfigError

if TYPE_CHECKING:
    from .beats import Beats

#: ``"frame"``: boundaries at the novelty peaks (every 0.46 s); ``"beat"`` / ``"bar"``:
#: each peak moved to the nearest estimated beat / downbeat.
SYNC_MODES = ("frame", "beat", "bar")


def check_sync(sync: str) -> str:
    """``sync`` if it is one of :data:`SYNC_MODES`, else a ConfigError."""
    if sync not in SYNC_MODES:
        raise ConfigError(f"sync must be one of {', '.join(SYNC_MODES)}, got {sync!r}")
    return sync


def sync_boundaries(boundaries: np.ndarray, beats: "Beats", sync: str) -> np.ndarray:
    """Move inner boundaries (s) to the nearest beat or downbeat of ``beats``.

    A boundary moves by at most one beat period (beat mode) or one bar (bar mode), the
    median spacing of the grid; farther boundaries, and all of them when the tracker found
    fewer than two grid times, stay at their novelty peak.

    Returns
    -------
    np.ndarray, shape (<= n,)
        Sorted boundaries from 0 to the end; those that meet on one grid time are merged.
    """
    from .beats import snap_to_grid

    check_sync(sync)
    if sync == "frame":
        return np.asarray(boundaries, dtype=float)
    grid = beats.downbeats if sync == "bar" else beats.times
    if len(grid) < 2:
        return np.asarray(boundaries, dtype=float)
    return snap_to_grid(boundaries, grid, max_shift=float(np.median(np.diff(grid))))
