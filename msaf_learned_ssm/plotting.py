"""Figure of one analysis: the learned SSM, the novelty curve, and the boundaries."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Union


from .fileio import atomic_open
from .inference import Analysis


def plot_analysis(analysis: Analysis, out_path: Union[str, os.PathLike],
                  reference: Optional[Sequence[float]] = None, title: Optional[str] = None
                  ) -> Path:
    """Save a PNG with the SSM (top) and the novelty curve (bottom) on a shared time axis.

    Detected boundaries are drawn as solid red lines; ``reference`` boundary times (s), if
    given, as dashed white/black lines.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_path = Path(out_path)
    times, end = analysis.patch_times, analysis.duration
    fig, (ax_ssm, ax_nov) = plt.subplots(2, 1, figsize=(7, 9), sharex=True,
                                         gridspec_kw={"height_ratios": [3, 1]})
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
    ax_nov.plot([], [], color="red", lw=0.8, label="estimated")
    if reference is not None:
        ax_nov.plot([], [], color="black", lw=0.8, ls="--", label="reference")
    ax_nov.set_xlim(0, end)
    ax_nov.set_ylim(0, 1)
    ax_nov.set_xlabel("time (s)")
    ax_nov.set_ylabel("novelty")
    ax_nov.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out_path, "wb") as handle:
        fig.savefig(handle, dpi=100, format="png")
    plt.close(fig)
    return out_path
