"""Figure of one analysis: the learned SSM, the novelty curve, and the boundaries.

Drawn on a :class:`matplotlib.figure.Figure` with the Agg canvas, not through ``pyplot``: the
caller's matplotlib backend and figure list are left alone.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Optional, Sequence, Union

from .fileio import atomic_open
from .inference import Analysis

__all__ = ["render_analysis_png", "plot_analysis"]


def render_analysis_png(analysis: Analysis, reference: Optional[Sequence[float]] = None,
                        title: Optional[str] = None) -> bytes:
    """PNG bytes of the SSM (top) and the novelty curve (bottom) on a shared time axis.

    Detected boundaries are solid red lines; ``reference`` boundary times (s), if given,
    dashed white/black lines; estimated downbeats (beat and bar modes), grey ticks along
    the bottom of the novelty panel.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    times, end = analysis.patch_times, analysis.duration
    fig = Figure(figsize=(7, 9))
    FigureCanvasAgg(fig)
    ax_ssm, ax_nov = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    if len(times):
        ax_ssm.imshow(analysis.ssm(), origin="lower", cmap="magma", vmin=0, vmax=1,
                      extent=[times[0], times[-1], times[0], times[-1]], aspect="auto")
    for b in analysis.boundaries[1:-1]:
        ax_ssm.axvline(b, color="red", lw=0.8)
        ax_nov.axvline(b, color="red", lw=0.8)
    for r in (reference if reference is not None else []):
        ax_ssm.axhline(r, color="white", lw=0.8, ls="--")
        ax_nov.axvline(r, color="black", lw=0.8, ls="--")
    ax_ssm.set_ylabel("time (s)")
    ax_ssm.set_title(title or Path(analysis.source).name)
    ax_nov.plot(times, analysis.novelty, color="C0", lw=1, label="novelty")
    if analysis.beats is not None and len(analysis.beats.times):
        ax_nov.vlines(analysis.beats.downbeats, 0, 0.08, color="0.4", lw=0.6,
                      label="downbeats")
    ax_nov.plot([], [], color="red", lw=0.8, label="estimated")
    if reference is not None:
        ax_nov.plot([], [], color="black", lw=0.8, ls="--", label="reference")
    ax_nov.set_xlim(0, end)
    ax_nov.set_ylim(0, 1)
    ax_nov.set_xlabel("time (s)")
    ax_nov.set_ylabel("novelty")
    ax_nov.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100, format="png")
    return buffer.getvalue()


def plot_analysis(analysis: Analysis, out_path: Union[str, os.PathLike],
                  reference: Optional[Sequence[float]] = None, title: Optional[str] = None
                  ) -> Path:
    """Write :func:`render_analysis_png` to ``out_path`` atomically; returns the path."""
    png = render_analysis_png(analysis, reference, title)
    out_path = Path(out_path)
    with atomic_open(out_path, "wb") as handle:
        handle.write(png)
    return out_path
