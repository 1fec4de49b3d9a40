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


#: In bar mode, a boundary moves to the nearest downbeat only when that downbeat is at
#: most this many beat periods away; otherwise to the nearest beat. A tracker that gets the
#: bar's phase wrong (half a bar off: two beats in 4/4) then costs little, while a right
#: downbeat still catches the boundaries near it. Chosen on validation
#: (``bench/results/sync.md``).
BAR_SNAP_BEATS = 1.0


def sync_boundaries(boundaries: np.ndarray, beats: "Beats", sync: str,
                    bar_snap_beats: float = BAR_SNAP_BEATS) -> np.ndarray:
    """Move inner boundaries (s) to the nearest beat, or downbeat, of ``beats``.

    Parameters
    ----------
    boundaries : np.ndarray, shape (n,)
        From 0 to the end of the track (s).
    beats : Beats
    sync : {"frame", "beat", "bar"}
        ``"beat"``: to the nearest beat, at most one beat period away. ``"bar"``: to the
        nearest downbeat when it is at most ``bar_snap_beats`` beat periods away, else
        to the nearest beat. ``"frame"``: unchanged.
    bar_snap_beats : float
        See :data:`BAR_SNAP_BEATS`.

    Returns
    -------
    np.ndarray, shape (<= n,)
        Sorted boundaries from 0 to the end; those that meet on one grid time are merged.
        With fewer than two beats (or downbeats), the boundaries are returned unchanged.
    """
    from .beats import snap_to_grid

    check_sync(sync)
    boundaries = np.asarray(boundaries, dtype=float)
    if sync == "frame" or len(beats.times) < 2:
        return boundaries
    period = float(np.median(np.diff(beats.times)))
    if sync == "beat" or len(beats.downbeats) < 2:
        return snap_to_grid(boundaries, beats.times, max_shift=period)
    to_bars = snap_to_grid(boundaries, beats.downbeats, max_shift=bar_snap_beats * period)
    # Downbeats are beats: the boundaries already on a bar line stay; the others go to
    # the nearest beat.
    return snap_to_grid(to_bars, beats.times, max_shift=period)
