"""Pairwise F of segment-labelling methods on annotated boundaries (validation selection).

Every method labels the reference segmentation (annotator 1) of each song, so only the
labelling is scored (mir_eval pairwise F, as ``bench/accuracy.py``'s label table):

* ``mean``: mean learned similarity between segments (the package's labels before);
* ``aligned``: ``labels.aligned_similarity``, the best diagonal of the segments' learned
  cross-similarity over time lags, which sees repetition in order;
* ``+ chroma, w``: ``w * learned + (1 - w) * labels.chroma_similarity`` (2D-Fourier
  magnitudes of the beat-synchronous chroma, what fmc2d clusters);
* each cut at a similarity threshold (average linkage) or into a fixed number of labels;
* ``fmc2d``: MSAF's fmc2d labelling (its own functions and settings: k-means, 4 labels) on
  the same beat-synchronous chroma, the baseline of issue 12.

Inputs come from ``Analyzer.analyze(path, labels=True)`` (embeddings, beats, chroma) and are
cached per song under ``bench/work/labels/`` (keyed by model hash), so that methods can be
compared without recomputing. Select on the validation splits; report the test split once.

Usage::

    python bench/label_methods.py --set "band val=corpora/pop909_band:training/splits/val.txt" \\
        --set "piano val=corpora/pop909_piano:training/splits/val.txt" [--out bench/results/labels.md]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

THRESHOLDS = ("auto", 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)
N_LABELS = (4, 5, 6)
TOP_DEFAULT = 30
CHROMA_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


def song_inputs(track, analyzer, cache_dir: Path) -> dict:
    """Embeddings, patch times, beat-synchronous chroma and reference of one song."""
    from msaf_learned_ssm_jams.segments import read_segments

    path = cache_dir / f"{track.track_id}.npz"
    if path.exists():
        return dict(np.load(path, allow_pickle=False))
    analysis = analyzer.analyze(track.audio, sync="frame", labels=True)
    ref_int, ref_lab = read_segments(track.reference, annotator=0)
    data = {"embeddings": analysis.embeddings, "patch_times": analysis.patch_times,
            "chroma": analysis.chroma, "chroma_times": analysis.chroma_times,
            "ref_int": ref_int, "ref_lab": np.asarray(ref_lab, dtype=str)}
    np.savez(path, **data)
    return data


def fmc2d_labels(data: dict, bounds: np.ndarray, k: int = 4) -> np.ndarray:
    """MSAF's fmc2d labelling (its functions, its settings) on the beat-synchronous chroma."""
    from msaf.algorithms.fmc2d.segmenter import compute_similarity

    starts, chroma = data["chroma_times"], data["chroma"]
    idx = np.unique(np.clip(np.searchsorted(starts, bounds), 0, len(starts) - 1))
    if len(idx) < 2:
        return np.zeros(len(bounds) - 1, dtype=int)
    labels = compute_similarity(chroma, idx, k=k, offset=4)
    # One label per reference segment (segments that collapsed onto one row share one).
    seg_of = np.clip(np.searchsorted(starts[idx], 0.5 * (bounds[:-1] + bounds[1:])) - 1,
                     0, len(labels) - 1)
    return np.asarray(labels)[seg_of]


def k_labels(similarity: np.ndarray, k: int) -> np.ndarray:
    """Average-linkage clustering of a segment similarity into at most ``k`` labels."""
    from scipy.cluster.hierarchy import fcluster

    from msaf_learned_ssm.labels import segment_linkage

    n = similarity.shape[0]
    if n <= 1:
        return np.zeros(n, dtype=int)
    return fcluster(segment_linkage(similarity)[0], min(k, n), criterion="maxclust")


def score(ref_int, ref_lab, labels) -> float:
    import mir_eval

    return mir_eval.segment.pairwise(ref_int, list(ref_lab), ref_int,
                                     [str(x) for x in labels])[2]


def song_scores(data: dict) -> dict[str, float]:
    """Pairwise F of every method on one song."""
    import mir_eval

    from msaf_learned_ssm.labels import (aligned_similarity, chroma_similarity,
                                         cluster_segments, segment_similarity)

    ref_int, ref_lab = mir_eval.util.adjust_intervals(
        data["ref_int"], list(data["ref_lab"]), t_min=0)
    bounds = np.concatenate([ref_int[:, 0], ref_int[-1:, 1]])
    emb, times = data["embeddings"], data["patch_times"]
    learned = {"mean": segment_similarity(emb, times, bounds),
               "aligned": aligned_similarity(emb, times, bounds)}
    harmonic = chroma_similarity(data["chroma"], data["chroma_times"], bounds)
    sims = dict(learned)
    for name, sim in learned.items():
        for w in CHROMA_WEIGHTS:
            sims[f"{name} + chroma, w={w}"] = w * sim + (1 - w) * harmonic
    out = {}
    for name, sim in sims.items():
        for t in THRESHOLDS:
            out[f"{name}, threshold {t}"] = score(ref_int, ref_lab, cluster_segments(sim, t))
        for k in N_LABELS:
            out[f"{name}, {k} labels"] = score(ref_int, ref_lab, k_labels(sim, k))
    out["fmc2d (MSAF's, 4 labels)"] = score(ref_int, ref_lab, fmc2d_labels(data, bounds))
    return out


def set_scores(corpus: Path, ids: Path, analyzer, work: Path, limit=None
               ) -> dict[str, list[float]]:
    """{method: [pairwise F per song]} on one set."""
    from msaf_learned_ssm_training.corpus import find_tracks, read_id_list
    from tqdm import tqdm

    cache_dir = work / f"{corpus.name}-{analyzer.identity['sha256'][:12]}-v2"
    cache_dir.mkdir(parents=True, exist_ok=True)
    tracks = find_tracks(corpus, read_id_list(ids), allow_missing=True)[:limit]
    rows: dict[str, list[float]] = {}
    for track in tqdm(tracks, desc=corpus.name):
        for method, value in song_scores(song_inputs(track, analyzer, cache_dir)).items():
            rows.setdefault(method, []).append(value)
    return rows


def main(argv=None) -> int:
    from msaf_learned_ssm import Analyzer
    from msaf_learned_ssm.fileio import atomic_write_text

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", required=True, help="NAME=CORPUS:IDS")
    parser.add_argument("--model", default=None, help="model name or file (default: shipped)")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "labels")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--top", type=int, default=TOP_DEFAULT, help="rows shown (best first)")
    parser.add_argument("--out", type=Path, default=None, help="write the table here (.md)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")

    analyzer = Analyzer(args.model, device="cpu")
    per_set = {}
    for spec in args.set:
        name, _, rest = spec.partition("=")
        corpus, _, ids = rest.partition(":")
        per_set[name] = set_scores(Path(corpus), Path(ids), analyzer, args.work, args.limit)
    pooled = {m: [v for rows in per_set.values() for v in rows[m]]
              for m in next(iter(per_set.values()))}
    ranked = sorted(pooled, key=lambda m: -np.mean(pooled[m]))
    from msaf_learned_ssm import labels

    shipped = (f"{labels.DEFAULT_SIMILARITY} + chroma, w={labels.DEFAULT_CHROMA_WEIGHT}, "
               f"threshold {labels.DEFAULT_THRESHOLD}")
    baselines = (shipped, "aligned, threshold 0.85", "fmc2d (MSAF's, 4 labels)",
                 "mean, threshold 0.6")
    keep = ranked[:args.top] + [m for m in baselines
                                if m in pooled and m not in ranked[:args.top]]
    head = " | ".join(f"{n} ({len(next(iter(r.values())))} songs)" for n, r in per_set.items())
    lines = [f"| labels | {head} | pooled |", "|---" * (len(per_set) + 2) + "|"]
    for method in keep:
        cells = " | ".join(f"{np.mean(r[method]):.3f}" for r in per_set.values())
        lines.append(f"| {method} | {cells} | {np.mean(pooled[method]):.3f} |")
    command = "python bench/label_methods.py " + " ".join(f'--set "{s}"' for s in args.set) \
        + (f" --model {args.model}" if args.model else "") \
        + (f" --top {args.top}" if args.top != TOP_DEFAULT else "")
    text = (f"# Segment labels on annotated boundaries\n\nPairwise F (mir_eval), mean over "
            f"songs, labels of annotator 1's segments; model `{analyzer.identity['name']}` "
            f"(sha256 {analyzer.identity['sha256'][:12]}); the {args.top} best methods on "
            "the pooled sets, then the package's default and the baselines (the learned "
            "similarity alone, MSAF's fmc2d, the package's labels before). "
            f"Command: `{command}`\n\n"
            + "\n".join(lines) + "\n")
    print(text)
    if args.out:
        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
