"""Which training audio helps: models scored on the validation split of both kinds of POP909
renders (piano, band) and on the Sargon recording, the one real labelled record in
``../shared/data``.

Each model is scored with its own peak-picking settings (those in its file), with the
trainer's evaluation (mir_eval hit rates, trimmed).  The rows name the training data, the
epochs and the training time read from each model file and its training log.

Writes ``bench/results/data.md``.

Usage::

    python bench/data_ablation.py "piano renders=msaf_learned_ssm/models/default.pt" \\
        "band renders=runs/band/model.pt" "band + augmentation=runs/band_aug/model.pt" \\
        --piano corpora/pop909_piano --band corpora/pop909_band
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def hit_rates(ref_bounds: np.ndarray, est_bounds: np.ndarray) -> dict:
    """Trimmed HR0.5F / HR3F of one track (boundary times in s, 0 and the end included)."""
    import mir_eval

    out = {}
    for window in (0.5, 3.0):
        _, _, f = mir_eval.segment.detection(
            np.stack([ref_bounds[:-1], ref_bounds[1:]], 1),
            np.stack([est_bounds[:-1], est_bounds[1:]], 1), window=window, trim=True)
        out[f"HR{window:g}F"] = f
    return out


def score_corpus(model_path: str, corpus: Path, ids: list, cache_dir: Path) -> dict:
    import torch

    from msaf_learned_ssm.inference import Analyzer
    from msaf_learned_ssm_training.corpus import FeatureCache, find_tracks
    from msaf_learned_ssm_training.trainer import TrainConfig, evaluate, load_example

    analyzer = Analyzer(model_path, "cpu")
    tracks = find_tracks(corpus, ids, allow_missing=True)
    cache = FeatureCache(cache_dir, analyzer.config)
    examples = [load_example(t, cache, TrainConfig()) for t in tracks]
    scores = evaluate(analyzer.model, examples, analyzer.peaks, torch.device("cpu"))
    return {"HR0.5F": scores["HR0.5F"], "HR3F": scores["HR3F"], "n": len(examples)}


def score_sargon(model_path: str) -> dict:
    from msaf_learned_ssm.inference import Analyzer
    from msaf_learned_ssm_jams.segments import read_segments

    analyzer = Analyzer(model_path, "cpu")
    result = analyzer.analyze(SHARED / "sargon" / "Mindless_cut.mp3")
    intervals, _ = read_segments(SHARED / "sargon" / "Mindless_cut.jams")
    ref = np.unique(intervals.ravel())
    return {**hit_rates(ref, result.boundaries), "n": 1}


def training_facts(model_path: str) -> str:
    """'epochs run (best) / hours' from the model file and the log beside it."""
    from msaf_learned_ssm.checkpoint import read_checkpoint
    from msaf_learned_ssm.model_files import resolve_model

    path = resolve_model(model_path)
    data = read_checkpoint(path)
    if "epoch" not in data:
        return "published checkpoint (Harmonix, Isophonics)"
    stem = path.name[:-3] if path.name.endswith(".pt") else path.name
    log = path.with_name(stem + ".log.jsonl")
    if not log.is_file():
        log = path.with_name("default_training_log.jsonl")
    if log.is_file():
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        hours = sum(r.get("seconds", 0.0) for r in rows) / 3600
        return f"{len(rows)} (best {data['epoch']}), {hours:.1f} h CPU"
    return f"best epoch {data['epoch']}"


def main(argv=None) -> int:
    from msaf_learned_ssm.fileio import atomic_write_text
    from msaf_learned_ssm_training.corpus import read_id_list

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="LABEL=MODEL (a file or a shipped name)")
    parser.add_argument("--piano", type=Path, default=ROOT / "corpora" / "pop909_piano")
    parser.add_argument("--band", type=Path, default=ROOT / "corpora" / "pop909_band")
    parser.add_argument("--ids", type=Path, default=ROOT / "training" / "splits" / "val.txt")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "cache" / "ablation")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "data.md")
    args = parser.parse_args(argv)
    ids = read_id_list(args.ids)
    rows = []
    for spec in args.models:
        label, _, model = spec.partition("=")
        started = time.perf_counter()
        piano = score_corpus(model, args.piano, ids, args.cache_dir)
        band = score_corpus(model, args.band, ids, args.cache_dir)
        sargon = score_sargon(model)
        rows.append((label, model, piano, band, sargon, training_facts(model)))
        print(f"{label}: piano {piano['HR0.5F']:.3f}/{piano['HR3F']:.3f} band "
              f"{band['HR0.5F']:.3f}/{band['HR3F']:.3f} sargon {sargon['HR0.5F']:.3f}/"
              f"{sargon['HR3F']:.3f} ({time.perf_counter() - started:.0f} s)", flush=True)
    n_piano, n_band = rows[0][2]["n"], rows[0][3]["n"]
    lines = [
        "# Training data ablation\n",
        f"Validation split (`training/splits/val.txt`): {n_piano} piano renders and {n_band} "
        "band renders of the same songs; Sargon, *Mindless* (63 s real recording). HR0.5F / "
        "HR3F, trimmed, each model with its own peak settings. Regenerate with "
        f"`python bench/{Path(__file__).name} {' '.join(repr(m) for m in args.models)}`.\n",
        "| training data | model | piano val | band val | Sargon | epochs (best), time |",
        "|---|---|---|---|---|---|",
    ]
    for label, model, piano, band, sargon, facts in rows:
        lines.append(f"| {label} | `{model}` | {piano['HR0.5F']:.3f} / {piano['HR3F']:.3f} | "
                     f"{band['HR0.5F']:.3f} / {band['HR3F']:.3f} | "
                     f"{sargon['HR0.5F']:.3f} / {sargon['HR3F']:.3f} | {facts} |")
    lines.append(f"\n![HR0.5F and HR3F per training data and evaluation set]({args.out.stem}.png)")
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    plot(rows, args.out.with_suffix(".png"))
    print(f"wrote {args.out}")
    return 0


def plot(rows: list, out: Path) -> None:
    """Grouped bars: HR0.5F (solid) and HR3F (light) per model, for each evaluation set."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from msaf_learned_ssm.fileio import atomic_open

    sets = [("piano val", 2), ("band val", 3), ("Sargon", 4)]
    fig = Figure(figsize=(9, 3.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(sets), sharey=True)
    width = 0.8 / len(rows)
    for ax, (title, col) in zip(axes, sets):
        for i, row in enumerate(rows):
            scores = row[col]
            x = np.array([0, 1]) + (i - (len(rows) - 1) / 2) * width
            ax.bar(x, [scores["HR0.5F"], scores["HR3F"]], width, color=f"C{i}",
                   label=row[0] if col == 2 else None)
        ax.set_xticks([0, 1], ["HR0.5F", "HR3F"])
        ax.set_title(title)
        ax.set_ylim(0, 1)
    axes[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    with atomic_open(out, "wb") as handle:
        fig.savefig(handle, dpi=100, format="png")


if __name__ == "__main__":
    sys.exit(main())
