"""Pairwise F of learned_ssm labels on annotated boundaries, per clustering threshold.

Tunes ``labels.DEFAULT_THRESHOLD`` on the validation songs (never the test split): labels
each reference segmentation (annotator 1) with the shipped model's embeddings and scores
them with mir_eval's pairwise F-measure, for "auto" and fixed thresholds.

Usage::

    python bench/label_threshold.py [--corpus corpora/pop909] [--ids msaf_learned_ssm/models/default_val_ids.txt] [--model MODEL.pt]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    import mir_eval
    import torch

    from msaf_learned_ssm_jams.segments import read_segments
    from msaf_learned_ssm import Analyzer
    from msaf_learned_ssm.labels import label_segments
    from msaf_learned_ssm_training.corpus import FeatureCache, find_tracks, read_id_list

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpora" / "pop909")
    parser.add_argument("--ids", type=Path,
                        default=ROOT / "msaf_learned_ssm" / "models" / "default_val_ids.txt")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "cache" / "pop909")
    parser.add_argument("--model", type=Path, default=None,
                        help="model file (default: the shipped model)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")

    analyzer = Analyzer(args.model, device="cpu")
    cache = FeatureCache(args.cache_dir, analyzer.config)
    thresholds = ["auto", 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9]
    scores = {t: [] for t in thresholds}
    # Unconvertible songs of a split are left out with a warning naming them.
    for track in find_tracks(args.corpus, read_id_list(args.ids), allow_missing=True):
        patches = cache.patches(track.audio)
        with torch.inference_mode():
            emb = analyzer.model.embed(torch.from_numpy(patches.data).to(analyzer.device))
        emb = emb.cpu().numpy()
        ref_int, ref_lab = read_segments(track.reference, annotator=0)
        ref_int, ref_lab = mir_eval.util.adjust_intervals(ref_int, ref_lab, t_min=0)
        bounds = np.concatenate([ref_int[:, 0], ref_int[-1:, 1]])
        for t in thresholds:
            labels = [str(x) for x in label_segments(emb, patches.times, bounds, t)]
            scores[t].append(mir_eval.segment.pairwise(ref_int, ref_lab, ref_int, labels)[2])
    print(f"| threshold | pairwise F ({len(scores['auto'])} songs) |\n|---|---|")
    for t in thresholds:
        print(f"| {t} | {np.mean(scores[t]):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
