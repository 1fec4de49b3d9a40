"""Beat and downbeat tracking accuracy: the package's tracker against librosa's.

For every song of the given splits (renders whose references carry a ``beat`` annotation,
as ``build-pop909`` writes them): beat F-measure and downbeat F-measure
(``mir_eval.beat.f_measure``, 70 ms window, first 5 s trimmed as mir_eval does), mean over
songs. librosa's ``beat.beat_track`` has no downbeats; its row counts every 4th beat from
its first as a downbeat (the naive bar grid a user would get from it). Also: the time the
tracker and librosa take per song (this machine, same run).

Writes ``bench/results/beats.md``.

Usage::

    python bench/beat_tracking.py [--tracker FILE] \\
        --set "band val=corpora/pop909_band:training/splits/val.txt" \\
        --set "piano val=corpora/pop909_piano:training/splits/val.txt" \\
        --set "band test=corpora/pop909_band:training/splits/test.txt"
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def f_measures(ref_beats, ref_down, est_beats, est_down, window: float = 0.07
               ) -> tuple[float, float]:
    """(beat F, downbeat F), first 5 s trimmed as mir_eval does, ``window`` in seconds."""
    import mir_eval

    trim = mir_eval.beat.trim_beats
    return (float(mir_eval.beat.f_measure(trim(np.asarray(ref_beats, float)),
                                          trim(np.asarray(est_beats, float)), window)),
            float(mir_eval.beat.f_measure(trim(np.asarray(ref_down, float)),
                                          trim(np.asarray(est_down, float)), window)))


def score_set(corpus: Path, ids_file: Path, tracker) -> dict:
    import librosa
    from tqdm import tqdm

    from msaf_learned_ssm.audio import load_audio
    from msaf_learned_ssm_jams.beats import read_beats
    from msaf_learned_ssm_training.corpus import find_tracks, read_id_list

    tracks = find_tracks(corpus, read_id_list(ids_file), allow_missing=True)
    ours, theirs, t_ours, t_theirs = [], [], 0.0, 0.0
    for track in tqdm(tracks, desc=corpus.name, leave=False):
        ref, pos = read_beats(track.reference)
        ref_down = ref[pos == 1]
        y = load_audio(track.audio, 22050)
        t0 = time.perf_counter()
        est = tracker.track(y)
        t_ours += time.perf_counter() - t0
        ours.append(f_measures(ref, ref_down, est.times, est.downbeats))
        t0 = time.perf_counter()
        _, frames = librosa.beat.beat_track(y=y, sr=22050, hop_length=512)
        lb = librosa.frames_to_time(frames, sr=22050, hop_length=512)
        t_theirs += time.perf_counter() - t0
        theirs.append(f_measures(ref, ref_down, lb, lb[::4]))
    n = max(len(tracks), 1)
    return {"n": len(tracks), "ours": np.mean(ours, axis=0), "librosa": np.mean(theirs, axis=0),
            "sec_ours": t_ours / n, "sec_librosa": t_theirs / n}


def main(argv=None) -> int:
    from msaf_learned_ssm.beats import DEFAULT_BEAT_MODEL, BeatTracker

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracker", default=str(DEFAULT_BEAT_MODEL))
    parser.add_argument("--set", action="append", required=True,
                        help="NAME=CORPUS:IDS_FILE (repeatable)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "beats.md")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    tracker = BeatTracker(args.tracker)
    lines = ["# Beat and downbeat tracking", "",
             "Mean over songs of `mir_eval.beat.f_measure` (70 ms; first 5 s trimmed). librosa: "
             "`librosa.beat.beat_track` on the audio, every 4th beat from its first counted as "
             "a downbeat. Seconds per song on one thread (this machine, same run).",
             "Command: `python bench/beat_tracking.py "
             + " ".join(f'--set "{s}"' for s in args.set) + "`", "",
             "| songs | n | beat F ours | beat F librosa | downbeat F ours | downbeat F librosa "
             "| s/song ours | s/song librosa |", "|---|---|---|---|---|---|---|---|"]
    for spec in args.set:
        name, rest = spec.split("=", 1)
        corpus, ids = rest.rsplit(":", 1)
        r = score_set(Path(corpus), Path(ids), tracker)
        lines.append(f"| {name} | {r['n']} | {r['ours'][0]:.3f} | {r['librosa'][0]:.3f} | "
                     f"{r['ours'][1]:.3f} | {r['librosa'][1]:.3f} | {r['sec_ours']:.2f} | "
                     f"{r['sec_librosa']:.2f} |")
        print(lines[-1], flush=True)
    meta = tracker.meta
    lines += ["", f"Tracker: `{Path(args.tracker).name}`, epoch {meta.get('epoch')}, validation "
              f"{meta.get('validation')}."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
