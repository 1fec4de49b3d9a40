"""Plot training runs side by side: validation HR0.5F / HR3F and losses per epoch.

Reads the per-epoch logs that ``msaf-learned-ssm train`` writes beside its model
(``MODEL.log.jsonl``, or the ``*_training_log.jsonl`` shipped with a model) and draws one
line per run; the best epoch (the one the model file holds) is marked.

Usage::

    python bench/training_curves.py runs/x/model.log.jsonl:label ... --out curves.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PANELS = [("val_HR0.5F", "validation HR0.5F"), ("val_HR3F", "validation HR3F"),
          ("loss", "labelled loss"), ("teacher_loss", "teacher loss")]


def read_log(path: Path) -> list[dict]:
    """The epoch records of a training log (one JSON object per line)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows or "epoch" not in rows[0]:
        raise SystemExit(f"{path}: not a training log (one JSON record per epoch)")
    return rows


def plot_runs(runs: dict[str, list[dict]], out: Path, title: str = "") -> None:
    """Four panels (:data:`PANELS`), one line per run, its best epoch circled."""
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 3.4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, rows) in enumerate(runs.items()):
        colour = colours[i % len(colours)]  # one colour per run in every panel
        best = max(rows, key=lambda r: r.get("val_score", float("-inf")))
        for ax, (key, name) in zip(axes, PANELS):
            points = [(r["epoch"], r[key]) for r in rows if key in r]
            if not points:
                continue
            ax.plot(*zip(*points), label=label, lw=1.4, color=colour)
            if key in best:
                ax.plot(best["epoch"], best[key], "o", mfc="none", color=colour)
    for ax, (_, name) in zip(axes, PANELS):
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    for ax, (key, _) in zip(axes, PANELS):
        if not ax.lines:
            ax.set_visible(False)  # e.g. no run had teachers
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("logs", nargs="+", metavar="LOG[:LABEL]")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default="")
    args = parser.parse_args(argv)
    runs = {}
    for spec in args.logs:
        path, _, label = spec.partition(":")
        runs[label or Path(path).stem] = read_log(Path(path))
    plot_runs(runs, args.out, args.title)
    print(args.out)


if __name__ == "__main__":
    main()
