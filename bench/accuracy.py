"""Boundary (and label) accuracy of learned_ssm against MSAF's algorithms, through MSAF.

Runs MSAF's own batch processing (``msaf.process`` on a dataset folder) and evaluation
(``msaf.eval.process``) on the POP909 test split for: the default model, the author's
published checkpoints (when ``../shared`` has them), and MSAF's foote, sf, olda, scluster,
cnmf and vmo, all in the same feature mode; ``learned_ssm`` is also shown in the other
mode (frame- vs beat-synchronous), and in each of its sync modes (``ssm_sync`` = frame,
beat, bar: boundaries at novelty peaks, beats or bar lines). Scores annotator 2 against annotator 1 (the human
ceiling) and the Sargon recording too. Label metrics compare ``learned_ssm`` labels with
fmc2d, scluster and cnmf on the annotated boundaries.

Writes ``bench/results/accuracy.md``, ``accuracy_tracks.csv`` and ``accuracy.png``.

Usage::

    python bench/accuracy.py --corpus corpora/pop909 [--limit N] [--n-jobs 2]

The corpus comes from ``msaf-learned-ssm build-pop909`` (see README).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

MSAF_BOUNDARY_ALGOS = ["foote", "sf", "olda", "scluster", "cnmf", "vmo"]
LABEL_ALGOS = ["learned_ssm", "fmc2d", "scluster", "cnmf"]
BOUNDARY_COLUMNS = ["HitRate_t0.5F", "HitRate_t0.5P", "HitRate_t0.5R",
                    "HitRate_t3F", "HitRate_t3P", "HitRate_t3R",
                    "HitRate_0.5F", "HitRate_3F"]


def make_dataset(corpus: Path, ids: list[str], out: Path) -> Path:
    """An MSAF dataset folder of symlinks to the chosen tracks (MSAF writes features and
    estimations there, never into the corpus)."""
    for sub in ("audio", "references"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for track in ids:
        audio = next((corpus / "audio").glob(f"{track}.*"))
        for src, dst in ((audio, out / "audio" / audio.name),
                         (corpus / "references" / f"{track}.jams",
                          out / "references" / f"{track}.jams")):
            if not dst.exists():
                os.symlink(src.resolve(), dst)
    return out


def run_algorithm(ds: Path, boundaries_id: str, labels_id, feature: str, framesync: bool,
                  n_jobs: int, overrides: dict | None = None):
    """msaf.process then msaf.eval.process; returns (per-track DataFrame, seconds/track)."""
    import msaf

    config = msaf.io.get_configuration(feature, False, framesync, boundaries_id, labels_id)
    config.update(overrides or {})
    config["features"] = None
    n_tracks = len(list((ds / "audio").iterdir()))
    start = time.perf_counter()
    msaf.process(str(ds), feature=feature, framesync=framesync, boundaries_id=boundaries_id,
                 labels_id=labels_id, n_jobs=n_jobs, config=dict(config))
    seconds = (time.perf_counter() - start) / max(n_tracks, 1)
    config = msaf.io.get_configuration(feature, False, framesync, boundaries_id, labels_id)
    config.update(overrides or {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = msaf.eval.process(str(ds), boundaries_id=boundaries_id, labels_id=labels_id,
                                   feature=feature, framesync=framesync, n_jobs=n_jobs,
                                   config=config)
    return scores, seconds


def warm_feature_cache(ds: Path, feature: str) -> float:
    """Compute MSAF's features (both modes) for every track once, so that the seconds per
    track of each algorithm do not depend on which one ran first. Returns s/track."""
    import msaf
    from msaf.base import Features

    structs = msaf.io.get_dataset_files(str(ds))
    start = time.perf_counter()
    for fs in structs:
        for framesync in (False, True):
            Features.select_features(feature, fs, False, framesync).features
    return (time.perf_counter() - start) / max(len(structs), 1)


def label_scores(ref_int, ref_lab, est_int, est_lab) -> dict:
    """Pairwise P/R/F and normalised conditional entropies (mir_eval), both annotations
    first stretched to the same [0, end] range as the metrics require."""
    import mir_eval

    t_max = max(ref_int[-1, 1], est_int[-1, 1])
    r_int, r_lab = mir_eval.util.adjust_intervals(ref_int, list(ref_lab), t_min=0, t_max=t_max)
    e_int, e_lab = mir_eval.util.adjust_intervals(est_int, list(est_lab), t_min=0, t_max=t_max)
    row = {}
    row["PWP"], row["PWR"], row["PWF"] = mir_eval.segment.pairwise(r_int, r_lab, e_int, e_lab)
    row["So"], row["Su"], row["Sf"] = mir_eval.segment.nce(r_int, r_lab, e_int, e_lab)
    return row


def labels_on_reference_boundaries(ds: Path, labels_id: str, feature: str, framesync: bool):
    """Label metrics of ``labels_id`` on the annotated boundaries, as MSAF's
    ``boundaries_id="gt"`` path does it (boundaries aligned to MSAF's frames, then the
    label algorithm), but reading the references with this package's adapter:
    MSAF 0.1.80's ``read_references`` drops the last 4 characters of the audio file name
    (``003.flac`` -> ``003..jams``) and finds no reference for FLAC files."""
    import mir_eval
    import msaf
    import pandas as pd
    from msaf.base import Features

    from msaf_learned_ssm_jams.segments import read_segments

    module = msaf.run.get_labels_module(labels_id)
    rows = []
    for fs in msaf.io.get_dataset_files(str(ds)):
        config = msaf.io.get_configuration(feature, False, framesync, "gt", labels_id)
        config["features"] = Features.select_features(feature, fs, False, framesync)
        config["hier"] = False
        ref_int, ref_lab = read_segments(fs.ref_file, annotator=0)
        frame_times = config["features"].frame_times
        n_frames = config["features"].features.shape[0]
        idxs = msaf.io.align_times(mir_eval.util.intervals_to_boundaries(ref_int),
                                   frame_times)
        idxs = np.unique(np.concatenate([[0], idxs, [n_frames - 1]])).astype(int)
        labels = module.Segmenter(fs, in_bound_idxs=idxs, **config).processFlat()[1]
        times, labels = msaf.utils.process_segmentation_level(
            idxs, labels, n_frames, frame_times, config["features"].dur)
        est_int = np.stack([times[:-1], times[1:]], 1)
        rows.append({"track_id": Path(fs.ref_file).stem,
                     **label_scores(ref_int, ref_lab, est_int, [str(x) for x in labels])})
    return pd.DataFrame(rows)


def human_agreement(ds: Path):
    """Annotator 2 scored against annotator 1, with the same metrics as MSAF (trimmed and
    untrimmed hit rates; pairwise F and normalised conditional entropies for labels)."""
    import mir_eval
    import pandas as pd

    from msaf_learned_ssm_jams.segments import read_segments

    rows = []
    for ref in sorted((ds / "references").glob("*.jams")):
        try:
            ref_int, ref_lab = read_segments(ref, annotator=0)
            est_int, est_lab = read_segments(ref, annotator=1)
        except Exception as exc:  # a song without a second annotation is reported
            print(f"human agreement: {ref.name}: {exc}", file=sys.stderr)
            continue
        row = {"track_id": ref.stem}
        for window in (0.5, 3):
            for trim, tag in ((True, "t"), (False, "")):
                p, r, f = mir_eval.segment.detection(ref_int, est_int, window=window, trim=trim)
                row.update({f"HitRate_{tag}{window}P": p, f"HitRate_{tag}{window}R": r,
                            f"HitRate_{tag}{window}F": f})
        row.update(label_scores(ref_int, ref_lab, est_int, est_lab))
        rows.append(row)
    return pd.DataFrame(rows)


def reference_hierarchy(ref_file: Path):
    """Two-level reference from POP909's two annotators: the one with fewer segments is the
    coarse level, the other the fine level (their granularities differ)."""
    from msaf_learned_ssm_jams.segments import read_segments

    levels = [read_segments(ref_file, annotator=a) for a in (0, 1)]
    levels.sort(key=lambda lv: len(lv[0]))
    return [lv[0] for lv in levels], [lv[1] for lv in levels]


def hierarchical_scores(ds: Path, algo: str, feature: str, framesync: bool, n_jobs: int):
    """L-measure and T-measure (mir_eval.hierarchy) of MSAF's hierarchical mode against the
    two-annotator reference hierarchy."""
    import mir_eval
    import msaf
    import pandas as pd

    config = msaf.io.get_configuration(feature, False, framesync, algo, algo)
    config["features"] = None
    file_structs = msaf.io.get_dataset_files(str(ds))
    results = msaf.process(str(ds), feature=feature, framesync=framesync, boundaries_id=algo,
                           labels_id=algo, hier=True, n_jobs=n_jobs, config=config)
    rows = []
    for fs, (times, labels) in zip(file_structs, results):
        try:
            ref_int, ref_lab = reference_hierarchy(Path(fs.ref_file))
        except Exception as exc:
            print(f"hierarchy {Path(fs.ref_file).name}: {exc}", file=sys.stderr)
            continue
        t_max = ref_int[0][-1, 1]
        est_int, est_lab = [], []
        for level_times, level_labels in zip(times[:2], labels[:2]):
            inter = np.stack([level_times[:-1], level_times[1:]], 1)
            inter, lab = mir_eval.util.adjust_intervals(inter, list(level_labels), t_min=0,
                                                        t_max=t_max)
            keep = inter[:, 1] > inter[:, 0]  # MSAF's last-frame boundary can make 0-length
            est_int.append(inter[keep])
            est_lab.append([x for x, k in zip(lab, keep) if k])
        ref_adj = [mir_eval.util.adjust_intervals(i, list(l), t_min=0, t_max=t_max)
                   for i, l in zip(ref_int, ref_lab)]
        ref_i = [r[0][r[0][:, 1] > r[0][:, 0]] for r in ref_adj]
        ref_l = [[x for x, k in zip(r[1], r[0][:, 1] > r[0][:, 0]) if k] for r in ref_adj]
        lp, lr, lf = mir_eval.hierarchy.lmeasure(ref_i, ref_l, est_int, est_lab)
        tp, tr, tf = mir_eval.hierarchy.tmeasure(ref_i, est_int, window=15)
        rows.append({"track_id": Path(fs.ref_file).stem, "L-F": lf, "L-P": lp, "L-R": lr,
                     "T-F": tf, "T-P": tp, "T-R": tr})
    return pd.DataFrame(rows)


def _fmt(x) -> str:
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.3f}"


def boundary_table(results: list[tuple[str, object, float]]) -> str:
    head = ("| algorithm | HR0.5F (trim) | P | R | HR3F (trim) | P | R | HR0.5F (untrimmed) "
            "| HR3F (untrimmed) | s/track |\n|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for name, df, seconds in results:
        m = df[BOUNDARY_COLUMNS].mean()
        lines.append(f"| {name} | " + " | ".join(_fmt(m[c]) for c in BOUNDARY_COLUMNS)
                     + f" | {_fmt(seconds) if seconds is not None else '–'} |")
    return head + "\n".join(lines) + "\n"


def label_table(results: list[tuple[str, object]]) -> str:
    head = "| labels | PWF | PWP | PWR | Sf | So | Su |\n|---|---|---|---|---|---|---|\n"
    lines = []
    for name, df in results:
        m = df[["PWF", "PWP", "PWR", "Sf", "So", "Su"]].mean()
        lines.append(f"| {name} | " + " | ".join(_fmt(m[c]) for c in m.index) + " |")
    return head + "\n".join(lines) + "\n"


def plot(results, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r[0] for r in results]
    f05 = [r[1]["HitRate_t0.5F"].mean() for r in results]
    f3 = [r[1]["HitRate_t3F"].mean() for r in results]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names)), 4))
    ax.bar(x - 0.2, f05, 0.4, label="HR0.5F (trimmed)")
    ax.bar(x + 0.2, f3, 0.4, label="HR3F (trimmed)")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("F-measure (mean over tracks)")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    from msaf_learned_ssm.fileio import atomic_open

    with atomic_open(out, "wb") as handle:
        fig.savefig(handle, dpi=100, format="png")


LABELS_NOTE = (
    "Pairwise F-measure (PWF) and normalised conditional entropies (Sf, So, Su) from "
    "`mir_eval`, on the reference boundaries aligned to MSAF's frames as MSAF's "
    "`boundaries_id=\"gt\"` does (MSAF 0.1.80 cannot read the references of FLAC files "
    "itself, see `labels_on_reference_boundaries`).\n")


def label_results(ds: Path, args, human=None) -> list:
    """[(name, per-track DataFrame)] of the label algorithms on the annotated boundaries."""
    labels = []
    for algo in (["learned_ssm"] if args.skip_msaf else LABEL_ALGOS):
        try:
            df = labels_on_reference_boundaries(ds, algo, args.feature, args.framesync)
            labels.append((f"{algo} on annotated boundaries", df))
        except Exception as exc:  # one broken MSAF algorithm must not hide the others
            print(f"labels {algo} failed: {exc}", file=sys.stderr)
    labels.append(("annotator 2 vs annotator 1",
                   human if human is not None else human_agreement(ds)))
    return labels


def write_label_report(ds: Path, args, n_tracks: int, argv) -> int:
    """``--labels-only``: the label table alone, in OUT/labels.md."""
    from msaf_learned_ssm.fileio import atomic_write_text

    mode = "framesync" if args.framesync else "beatsync"
    text = "\n".join([
        "# Labels on annotated boundaries\n",
        f"Generated by `python bench/accuracy.py {' '.join(argv or sys.argv[1:])}`: "
        f"{n_tracks} songs of `{args.split}` in `{args.corpus}`, MSAF feature "
        f"`{args.feature}`, {mode}. " + LABELS_NOTE,
        label_table(label_results(ds, args))])
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "labels.md", text + "\n")
    print(text)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpora" / "pop909")
    parser.add_argument("--split", type=Path, default=ROOT / "training" / "splits" / "test.txt")
    parser.add_argument("--limit", type=int, default=None, help="first N tracks of the split")
    parser.add_argument("--feature", default="pcp")
    parser.add_argument("--framesync", action="store_true",
                        help="frame-synchronous mode for all algorithms (default: beat-sync)")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "work")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--skip-msaf", action="store_true",
                        help="only the learned models (boundaries, labels, hierarchy)")
    parser.add_argument("--labels-only", action="store_true",
                        help="only the label table (learned_ssm and MSAF's label algorithms "
                             "on the annotated boundaries), written to OUT/labels.md")
    args = parser.parse_args(argv)

    import pandas as pd

    import msaf_learned_ssm  # noqa: F401  (registers learned_ssm)
    from msaf_learned_ssm_training.corpus import read_id_list

    ids = [i for i in read_id_list(args.split)
           if (args.corpus / "references" / f"{i}.jams").is_file()]
    missing = len(read_id_list(args.split)) - len(ids)
    if args.limit:
        ids = ids[:args.limit]
    mode = "framesync" if args.framesync else "beatsync"
    ds = make_dataset(args.corpus, ids, args.work / f"pop909_test_{len(ids)}")
    print(f"{len(ids)} test tracks ({missing} of the split have no reference), mode {mode}")

    feature_sec = warm_feature_cache(ds, args.feature)
    print(f"MSAF features ({args.feature}, beats): {feature_sec:.2f} s/track")
    if args.labels_only:
        return write_label_report(ds, args, len(ids), argv)
    from msaf_learned_ssm.model_files import NAMED_MODELS, resolve_model

    # Every shipped model, each with its own peak settings (those in its file).
    learned = [(f"learned_ssm ({name})", {"ssm_model": name}) for name in NAMED_MODELS
               if resolve_model(name).is_file()]
    results = []
    for name, overrides in learned:
        df, sec = run_algorithm(ds, "learned_ssm", None, args.feature, args.framesync,
                                args.n_jobs, overrides)
        results.append((f"{name}, {mode}", df, sec))
        print(results[-1][0], df["HitRate_t3F"].mean(), f"{sec:.2f} s/track")
    other = not args.framesync
    df, sec = run_algorithm(ds, "learned_ssm", None, args.feature, other, args.n_jobs)
    results.append((f"learned_ssm (default), {'framesync' if other else 'beatsync'}",
                    df, sec))
    # Each sync mode of the default model, in MSAF's framesync mode (MSAF's frames are
    # 46 ms, so the placement is the model's own and not moved again to MSAF's beats).
    for sync in ("frame", "beat", "bar"):
        df, sec = run_algorithm(ds, "learned_ssm", None, args.feature, True, args.n_jobs,
                                {"ssm_sync": sync})
        results.append((f"learned_ssm (default), ssm_sync={sync}, framesync", df, sec))
        print(results[-1][0], df["HitRate_t0.5F"].mean(), df["HitRate_t3F"].mean())
    if not args.skip_msaf:
        for algo in MSAF_BOUNDARY_ALGOS:
            try:
                df, sec = run_algorithm(ds, algo, None, args.feature, args.framesync,
                                        args.n_jobs)
            except Exception as exc:  # one broken MSAF algorithm must not hide the others
                print(f"{algo} failed: {exc}", file=sys.stderr)
                continue
            results.append((f"{algo}, {mode}", df, sec))
            print(algo, df["HitRate_t3F"].mean(), f"{sec:.2f} s/track")
    human = human_agreement(ds)
    results.append(("annotator 2 vs annotator 1", human, None))

    labels = label_results(ds, args, human)

    hier = []
    for algo in ("learned_ssm",) if args.skip_msaf else ("learned_ssm", "scluster"):
        # MSAF's hierarchical algorithms that label
        try:
            hier.append((algo, hierarchical_scores(ds, algo, args.feature, args.framesync,
                                                   args.n_jobs)))
        except Exception as exc:
            print(f"hierarchy {algo} failed: {exc}", file=sys.stderr)

    sargon = []
    if (SHARED / "sargon" / "Mindless_cut.mp3").is_file():
        sds = args.work / "sargon"
        for sub, src in (("audio", SHARED / "sargon" / "Mindless_cut.mp3"),
                         ("references", SHARED / "sargon" / "Mindless_cut.jams")):
            (sds / sub).mkdir(parents=True, exist_ok=True)
            if not (sds / sub / src.name).exists():
                os.symlink(src, sds / sub / src.name)
        warm_feature_cache(sds, args.feature)
        for name, overrides in learned:
            df, sec = run_algorithm(sds, "learned_ssm", None, args.feature, args.framesync, 1,
                                    overrides)
            sargon.append((name, df, sec))
        if not args.skip_msaf:
            for algo in MSAF_BOUNDARY_ALGOS:
                try:
                    df, sec = run_algorithm(sds, algo, None, args.feature, args.framesync, 1)
                    sargon.append((algo, df, sec))
                except Exception as exc:
                    print(f"sargon {algo} failed: {exc}", file=sys.stderr)

    args.out.mkdir(parents=True, exist_ok=True)
    tracks = pd.concat([df.assign(algorithm=name) for name, df, _ in results], ignore_index=True)
    tracks.to_csv(args.out / "accuracy_tracks.csv", index=False)
    plot(results, args.out / "accuracy.png")
    text = [
        "# Boundary accuracy on the POP909 test split\n",
        f"Generated by `python bench/accuracy.py {' '.join(argv or sys.argv[1:])}`.\n",
        f"{len(ids)} songs of `training/splits/test.txt` rendered by `build-pop909` "
        f"({missing} songs of the split have no reference: the POP909 adapter rejects them). "
        f"References: annotator 1 (`human_label1`). All algorithms ran through MSAF's batch "
        f"mode and `msaf.eval.process` with feature `{args.feature}`, **{mode}**; "
        "`learned_ssm` is also shown in the other mode. HR = hit rate (mir_eval), "
        "mean over tracks. *trim*: MSAF's `HitRate_t*` (first and last boundaries dropped; "
        "MSAF adds a spurious boundary at the last frame, so the untrimmed scores are "
        "biased). s/track: wall time of `msaf.process` per track on this machine "
        "with MSAF's features already cached ("
        + (f"computing them, beat tracking included, took {feature_sec:.1f} s/track"
           if feature_sec > 0.5 else "by an earlier run of this script")
        + "; that cost is paid once by whichever algorithm runs first, and "
        "`bench/speed.py` measures cold runs).\n",
        boundary_table(results),
        "\n![accuracy](accuracy.png)\n",
        "\n## Labels on annotated boundaries\n",
        LABELS_NOTE,
        label_table(labels),
    ]
    if hier:
        text += ["\n## Hierarchical segmentation (two levels)\n",
                 "MSAF's hierarchical mode (`hier=True`) against a two-level reference made from "
                 "POP909's two annotators: the annotation with fewer segments is the coarse "
                 "level, the other the fine level. L-measure and T-measure (window 15 s) from "
                 "`mir_eval.hierarchy`, mean over tracks.\n",
                 "| algorithm | L-F | L-P | L-R | T-F | T-P | T-R |\n|---|---|---|---|---|---|---|"]
        for name, df in hier:
            m = df[["L-F", "L-P", "L-R", "T-F", "T-P", "T-R"]].mean()
            text.append(f"| {name} | " + " | ".join(_fmt(m[c]) for c in m.index) + " |")
    if sargon:
        text += ["\n## Sargon, *Mindless* (63 s real recording, `segment_open` reference)\n",
                 boundary_table(sargon)]
    (args.out / "accuracy.md").write_text("\n".join(text))
    print((args.out / "accuracy.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
