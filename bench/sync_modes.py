"""Where boundaries should fall: novelty peaks, beats or bar lines, scored on validation.

For each model (its own peak settings) and each song, the frame-mode boundaries are
computed once and then placed by each mode:

- ``frame``: the novelty peaks (what the package did before beat tracking);
- ``beat``: each boundary moved to the nearest estimated beat (``sync="beat"``);
- ``bar``: moved to the nearest estimated downbeat when it is at most
  ``sync.BAR_SNAP_BEATS`` beat periods away, else to the nearest beat (``sync="bar"``);
  ``bar, <= k beats``: the same with other values of that limit;
- ``bar-peaks``: peaks picked on the novelty curve pooled per estimated bar (the maximum
  within half a bar of each downbeat), the same peak settings counted in bars: a
  bar-synchronous peak picker;
- ``true bars``: moved to the nearest *reference* downbeat (an upper bound; POP909 only).

Hit rates: trimmed HR0.5F / HR3F (mir_eval), mean over songs. Selection is on the
validation splits only.

Writes ``bench/results/sync.md``.

Usage::

    python bench/sync_modes.py --model default --model author-nbatt3 \\
        --set "band val=corpora/pop909_band:training/splits/val.txt" \\
        --set "piano val=corpora/pop909_piano:training/splits/val.txt" [--sargon]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

#: Other values of sync.BAR_SNAP_BEATS compared (2 beats: always the nearest downbeat in 4/4).
BAR_SNAP_VARIANTS = (1.5, 2.0)
MODES = ("frame", "beat", "bar") + tuple(f"bar, <= {k:g} beats" for k in BAR_SNAP_VARIANTS) \
    + ("bar-peaks", "true bars")


def bar_peak_boundaries(novelty, patch_times, downbeats, duration, peaks) -> np.ndarray:
    """Peaks of the novelty pooled per bar (see the module docstring)."""
    from msaf_learned_ssm.peaks import pick_peaks

    if len(downbeats) < 3:
        return None
    bar = float(np.median(np.diff(downbeats)))
    pooled = np.array([novelty[np.abs(patch_times - d) <= bar / 2].max(initial=0.0)
                       for d in downbeats])
    found = pick_peaks(pooled, bar, peaks)
    inner = downbeats[found]
    inner = inner[(inner > 0) & (inner < duration)]
    return np.concatenate([[0.0], inner, [duration]])


def song_boundaries(analyzer, patches, beats, ref_down) -> dict:
    from msaf_learned_ssm.sync import sync_boundaries
    from msaf_learned_ssm.beats import snap_to_grid

    frame = analyzer.analyze_patches(patches, sync="frame")
    out = {"frame": frame.boundaries,
           "beat": sync_boundaries(frame.boundaries, beats, "beat"),
           "bar": sync_boundaries(frame.boundaries, beats, "bar")}
    for k in BAR_SNAP_VARIANTS:
        out[f"bar, <= {k:g} beats"] = sync_boundaries(frame.boundaries, beats, "bar", k)
    bp = bar_peak_boundaries(frame.novelty, frame.patch_times, beats.downbeats,
                             frame.duration, analyzer.peaks)
    out["bar-peaks"] = bp if bp is not None else frame.boundaries
    if ref_down is not None and len(ref_down) > 1:
        out["true bars"] = snap_to_grid(frame.boundaries, ref_down,
                                        float(np.median(np.diff(ref_down))))
    return out


def score_songs(analyzers: dict, songs) -> dict:
    """{model: {mode: [(HR0.5F, HR3F) per song]}}."""
    from tqdm import tqdm

    from data_ablation import hit_rates
    from msaf_learned_ssm.audio import load_audio
    from msaf_learned_ssm.features import compute_patches

    first = next(iter(analyzers.values()))
    scores = {m: {mode: [] for mode in MODES} for m in analyzers}
    for audio, ref, ref_down in tqdm(songs, leave=False):
        y = load_audio(audio, 22050)
        patches = compute_patches(y, first.config, keep_mel=True)
        beats = first.tracker.track_patches(patches)
        patches.beats = beats  # beat-grid models centre their patches on them
        for name, analyzer in analyzers.items():
            for mode, b in song_boundaries(analyzer, patches, beats, ref_down).items():
                h = hit_rates(ref, b)
                scores[name][mode].append((h["HR0.5F"], h["HR3F"]))
    return scores


def corpus_songs(corpus: Path, ids: Path):
    from msaf_learned_ssm_jams.beats import read_beats
    from msaf_learned_ssm_jams.segments import read_segments
    from msaf_learned_ssm_training.corpus import find_tracks, read_id_list

    songs = []
    for t in find_tracks(corpus, read_id_list(ids), allow_missing=True):
        intervals, _ = read_segments(t.reference)
        try:
            times, pos = read_beats(t.reference)
            down = times[pos == 1]
        except Exception:  # noqa: BLE001 - no beat annotation: no upper-bound row
            down = None
        songs.append((t.audio, np.unique(intervals.ravel()), down))
    return songs


def main(argv=None) -> int:
    import torch

    from msaf_learned_ssm.inference import Analyzer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--set", action="append", required=True, help="NAME=CORPUS:IDS")
    parser.add_argument("--sargon", action="store_true", help="Also the Sargon recording.")
    parser.add_argument("--tracker", default=None, help="Beat tracker file (default shipped).")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sync.md")
    parser.add_argument("--write-sync", type=Path, default=None, metavar="OUT",
                        help="Save a copy of the first --model whose `sync` is the mode "
                             "(frame, beat, bar) with the best pooled validation mean of "
                             "HR0.5F and HR3F, among those whose HR3F is not below frame's.")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    analyzers = {m: Analyzer(m, "cpu", beat_model=args.tracker or "package")
                 for m in args.model}
    sets = {}
    for spec in args.set:
        name, rest = spec.split("=", 1)
        corpus, ids = rest.rsplit(":", 1)
        sets[name] = score_songs(analyzers, corpus_songs(Path(corpus), Path(ids)))
    if args.sargon:
        from msaf_learned_ssm_jams.segments import read_segments

        intervals, _ = read_segments(SHARED / "sargon" / "Mindless_cut.jams")
        sets["Sargon"] = score_songs(analyzers, [(SHARED / "sargon" / "Mindless_cut.mp3",
                                                  np.unique(intervals.ravel()), None)])
    names = list(sets)
    lines = ["# Boundary placement: frame, beat, bar", "",
             "Trimmed HR0.5F / HR3F (mean over songs), each model with its own peak settings; "
             "beats and downbeats from the package's tracker. `true bars` snaps to the "
             "reference downbeats (an upper bound, not a mode). Pooled = the songs of all "
             "the sets but Sargon (validation sets select; a test set only reports).",
             "Command: `python bench/sync_modes.py " + " ".join(
                 f"--model {m}" for m in args.model) + " " + " ".join(
                 f'--set "{s}"' for s in args.set) + (" --sargon" if args.sargon else "") + "`",
             "", "| model | placement | " + " | ".join(f"{n} HR0.5F | {n} HR3F" for n in names)
             + " | pooled HR0.5F | pooled HR3F |",
             "|---|---|" + "---|---|" * len(names) + "---|---|"]
    for model in args.model:
        for mode in MODES:
            cells, pooled = [], []
            for n in names:
                s = sets[n][model][mode]
                if n != "Sargon":
                    pooled += s
                cells.append(f"{np.mean([a for a, _ in s]):.3f} | {np.mean([b for _, b in s]):.3f}"
                             if s else "- | -")
            p = (f"{np.mean([a for a, _ in pooled]):.3f} | {np.mean([b for _, b in pooled]):.3f}"
                 if pooled else "- | -")
            lines.append(f"| {Path(model).name} | {mode} | " + " | ".join(cells) + f" | {p} |")
            print(lines[-1], flush=True)
    if args.write_sync is not None:
        lines += ["", choose_and_write_sync(args.model[0], sets, args.write_sync)]
        print(lines[-1])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


def choose_and_write_sync(model: str, sets: dict, out: Path) -> str:
    """Pick the model's sync mode on the pooled validation songs and store it in a copy."""
    from msaf_learned_ssm.checkpoint import atomic_torch_save, read_checkpoint
    from msaf_learned_ssm.model_files import resolve_model

    pooled = {mode: [s for n in sets if n != "Sargon" for s in sets[n][model][mode]]
              for mode in ("frame", "beat", "bar")}
    mean = {mode: (np.mean([a for a, _ in v]), np.mean([b for _, b in v]))
            for mode, v in pooled.items()}
    allowed = [m for m in mean if mean[m][1] >= mean["frame"][1] - 1e-9]
    best = max(allowed, key=lambda m: sum(mean[m]))
    data = read_checkpoint(resolve_model(model))
    data["sync"] = best
    atomic_torch_save(data, out)
    return (f"Chosen sync for `{Path(model).name}` (pooled validation, best mean of HR0.5F and "
            f"HR3F with HR3F not below frame's): **{best}** "
            f"({mean[best][0]:.3f} / {mean[best][1]:.3f}; frame {mean['frame'][0]:.3f} / "
            f"{mean['frame'][1]:.3f}); written to `{out}`.")


if __name__ == "__main__":
    sys.exit(main())
