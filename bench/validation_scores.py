"""Validation hit rates of model files, with the trainer's own evaluation (mir_eval,
trimmed, each model's own peak picking) on a list of songs: compares the shipped model with the
author's published checkpoints on the songs used for model selection.

Usage::

    python bench/validation_scores.py MODEL.pt [MODEL.pt ...] [--ids FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    import torch

    from msaf_learned_ssm.inference import Analyzer
    from msaf_learned_ssm_training.corpus import FeatureCache, find_tracks, read_id_list
    from msaf_learned_ssm_training.trainer import TrainConfig, evaluate, load_example

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpora" / "pop909")
    parser.add_argument("--ids", type=Path,
                        default=ROOT / "msaf_learned_ssm" / "models" / "default_val_ids.txt")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "cache" / "pop909")
    args = parser.parse_args(argv)
    # Songs of the split that could not be converted (no audio or reference) are left out
    # with a warning naming them, as the trainer does.
    tracks = find_tracks(args.corpus, read_id_list(args.ids), allow_missing=True)
    print(f"| model | HR0.5F | HR3F ({len(tracks)} songs) |\n|---|---|---|")
    for name in args.models:
        analyzer = Analyzer(name, "cpu")  # a shipped name or a file; its own peak settings
        cache = FeatureCache(args.cache_dir, analyzer.config)
        examples = [load_example(t, cache, TrainConfig()) for t in tracks]
        s = evaluate(analyzer.model, examples, analyzer.peaks, torch.device("cpu"))
        print(f"| {Path(name).name} | {s['HR0.5F']:.3f} | {s['HR3F']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
