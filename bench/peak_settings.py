"""Tune a model's peak picking on the validation split, and store the settings in its file.

The novelty curve of each validation song is computed once; every combination of the grid
(local-mean half window, minimum distance, ratio threshold) is then scored with mir_eval
(trimmed HR0.5F and HR3F, their mean selects).  Only validation songs are used: the test split
never selects anything.

Usage::

    python bench/peak_settings.py runs/band_aug/model.pt \\
        --corpus corpora/pop909_band corpora/pop909_piano --write msaf_learned_ssm/models/default.pt

``--write`` saves a copy of the model whose ``peaks`` are the best settings (the model
file then carries them: ``Analyzer``, ``segment`` and the MSAF plugin use them unless told
otherwise).  The table of the top settings is printed.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

GRID = {
    "mean_half_sec": (6.0, 8.0, 10.0, 12.0),
    "min_distance_sec": (4.0, 5.0, 6.0, 7.0, 8.0),
    "threshold": (1.1, 1.2, 1.25, 1.3, 1.35, 1.4, 1.5, 1.6, 1.7, 1.8, 2.0),
}


def novelty_curves(model_path: str, corpus: Path, ids: list, cache_dir: Path,
                   sync: str = "frame"):
    """[(novelty (T,), patch times (T,), duration s, reference boundaries, beats or None)]
    per song (beats from the package's tracker when ``sync`` is not frame)."""
    import torch

    from msaf_learned_ssm.inference import Analyzer
    from msaf_learned_ssm_training.corpus import FeatureCache, find_tracks
    from msaf_learned_ssm_training.trainer import TrainConfig, load_example

    analyzer = Analyzer(model_path, "cpu")
    cache = FeatureCache(cache_dir, analyzer.config)
    out = []
    with torch.inference_mode():
        for track in find_tracks(corpus, ids, allow_missing=True):
            ex = load_example(track, cache, TrainConfig())
            _, novelty = analyzer.model(torch.from_numpy(ex.patches))
            # The shipped tracker's beats (the Analyzer's), cached beside the features.
            beats = cache.beats(track.audio) if sync != "frame" else None
            out.append((novelty.numpy(), ex.patch_times, ex.duration, ex.boundaries, beats))
    return analyzer, out


def score(curves, config, peaks, sync: str = "frame") -> tuple[float, float]:
    """Mean trimmed HR0.5F and HR3F over the songs with these peak settings."""
    import mir_eval

    from msaf_learned_ssm.peaks import novelty_to_boundaries
    from msaf_learned_ssm.sync import sync_boundaries

    f05, f3 = [], []
    for novelty, times, duration, ref, beats in curves:
        _, est = novelty_to_boundaries(novelty, times, duration, config.grid_hop_sec(times),
                                       peaks)
        if beats is not None:
            est = sync_boundaries(est, beats, sync)
        r, e = np.stack([ref[:-1], ref[1:]], 1), np.stack([est[:-1], est[1:]], 1)
        f05.append(mir_eval.segment.detection(r, e, window=0.5, trim=True)[2])
        f3.append(mir_eval.segment.detection(r, e, window=3.0, trim=True)[2])
    return float(np.mean(f05)), float(np.mean(f3))


def main(argv=None) -> int:
    from msaf_learned_ssm.checkpoint import atomic_torch_save, read_checkpoint
    from msaf_learned_ssm.config import PeakConfig
    from msaf_learned_ssm_training.corpus import read_id_list

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--corpus", type=Path, nargs="+",
                        default=[ROOT / "corpora" / "pop909_band", ROOT / "corpora" / "pop909_piano"],
                        help="Validation corpora, pooled (default: both kinds of POP909 renders, "
                             "so that settings do not fit the drums' strong cues alone).")
    parser.add_argument("--ids", type=Path, default=ROOT / "training" / "splits" / "val.txt")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "cache" / "band")
    parser.add_argument("--sync", choices=["frame", "beat", "bar"], default="frame",
                        help="Score the boundaries placed this way (tune for that mode).")
    parser.add_argument("--write", type=Path, default=None,
                        help="Save a copy of the model with the best settings here.")
    args = parser.parse_args(argv)
    curves = []
    for corpus in args.corpus:
        analyzer, more = novelty_curves(args.model, corpus, read_id_list(args.ids),
                                        args.cache_dir, args.sync)
        curves += more
    config = analyzer.config  # its patch hop: per track on a beat grid (grid_hop_sec)
    rows = []
    for values in itertools.product(*GRID.values()):
        peaks = PeakConfig(**dict(zip(GRID, values)))
        f05, f3 = score(curves, config, peaks, args.sync)
        rows.append((0.5 * (f05 + f3), f05, f3, peaks))
    rows.sort(key=lambda r: -r[0])
    own = score(curves, config, analyzer.peaks, args.sync)
    names = " + ".join(c.name for c in args.corpus)
    print(f"sync {args.sync}: {len(curves)} validation tracks of {names}; the model's current settings "
          f"{analyzer.peaks.to_dict()}: HR0.5F {own[0]:.3f} HR3F {own[1]:.3f}\n")
    print("| mean half (s) | min distance (s) | threshold | HR0.5F | HR3F |\n|---|---|---|---|---|")
    for _, f05, f3, p in rows[:10]:
        print(f"| {p.mean_half_sec:g} | {p.min_distance_sec:g} | {p.threshold:g} | {f05:.3f} | "
              f"{f3:.3f} |")
    if args.write is not None:
        data = read_checkpoint(args.model)
        data["peaks"] = rows[0][3].to_dict()
        data["sync"] = args.sync
        data["peaks_selected_on"] = (f"{len(curves)} tracks of {args.ids.name} in {names}, "
                                     f"sync {args.sync}: "
                                     f"HR0.5F {rows[0][1]:.3f}, HR3F {rows[0][2]:.3f}")
        atomic_torch_save(data, args.write)
        print(f"\nwrote {args.write} with peaks {data['peaks']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
