"""Where the package tracker's downbeats lose against madmom's: tempo octave or bar phase.

For each unlabelled real track with madmom's beats cached (``bench/beat_agreement.py``
fills ``cache/madmom_beats``), the package's tracker runs as shipped (bar decoder with
the chord cue) and is scored against madmom (``mir_eval.beat.f_measure``, 150 ms, first
5 s trimmed). Tracks are grouped by how the package's tempo relates to madmom's (same,
package at half or double, other; within 4 %), and each gets an **oracle phase** score:
the best downbeat F over every choice of "every k-th package beat from offset o" (k = 2,
3, 4), i.e. what a bar decoder could reach with the package's beats if it chose the bar
length and phase perfectly. The gap between the two says how much is lost to the bar
decoder, and which tracks lose it.

madmom is a measuring stick only: its beats are never training targets (CC BY-NC-SA 4.0).

Usage::

    python bench/downbeat_errors.py --ids corpora/unlabeled/train_ids.txt [--per-track]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

#: Bar lengths (in package beats) the oracle tries.
ORACLE_BAR_LENGTHS = (2, 3, 4)


def oracle_phase_f(ref_times: np.ndarray, ref_pos: np.ndarray, est_times: np.ndarray,
                   window: float = 0.15) -> float:
    """Best downbeat F-measure of "every k-th estimated beat from offset o" against the
    reference, over k in :data:`ORACLE_BAR_LENGTHS` and every offset o < k.

    Parameters
    ----------
    ref_times, ref_pos : np.ndarray, shape (n,)
        Reference beat times (s) and positions in the bar (1 = downbeat).
    est_times : np.ndarray, shape (m,)
        Estimated beat times (s).
    window : float
        F-measure window (s).
    """
    from beat_agreement import f_measures

    best = 0.0
    index = np.arange(len(est_times))
    for k in ORACLE_BAR_LENGTHS:
        for offset in range(k):
            positions = np.where((index - offset) % k == 0, 1, 2)
            best = max(best, f_measures(ref_times, ref_pos, est_times, positions, window)[1])
    return best


def main(argv=None) -> int:
    from tqdm import tqdm

    from beat_agreement import cached_madmom_beats, f_measures, tempo_relation
    from beat_tracking import RELATIONS
    from msaf_learned_ssm.audio import load_audio
    from msaf_learned_ssm.beats import BeatTracker, decode_beats
    from msaf_learned_ssm.features import log_mel_and_chroma, standardize_bands

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--unlabeled", type=Path, default=ROOT / "corpora" / "unlabeled")
    parser.add_argument("--ids", type=Path, required=True, help="unlabelled track ids")
    parser.add_argument("--cache", type=Path, default=ROOT / "cache" / "madmom_beats")
    parser.add_argument("--tracker", type=Path, default=None,
                        help="tracker file (default: the shipped one)")
    parser.add_argument("--per-track", action="store_true", help="also one line per track")
    args = parser.parse_args(argv)

    tracker = BeatTracker(args.tracker)
    frontend = tracker.config.model_config
    rows = []
    for track_id in tqdm(args.ids.read_text().split(), leave=False):
        audio = next((args.unlabeled / "audio").glob(track_id + ".*"), None)
        if audio is None:
            continue
        cached = cached_madmom_beats(audio, args.cache)
        if cached is None:
            continue  # madmom's beats not cached: bench/beat_agreement.py makes them
        ref_times, ref_pos = cached
        mel, chroma = log_mel_and_chroma(load_audio(audio, frontend.sample_rate), frontend)
        activations, times = tracker.mel_activations(standardize_bands(mel))
        beats = decode_beats(activations, times, tracker.config,
                             chroma=(chroma, frontend.frame_sec))
        beat_f, down_f = f_measures(ref_times, ref_pos, beats.times, beats.positions, 0.15)
        rows.append((track_id, tempo_relation(ref_times, beats.times), beat_f, down_f,
                     oracle_phase_f(ref_times, ref_pos, beats.times)))
    print(f"{len(rows)} tracks with madmom's beats cached; tracker: "
          f"{args.tracker or 'the shipped beats.pt'}; 150 ms")
    print("| package's tempo against madmom's | tracks | beat F | downbeat F | "
          "oracle-phase downbeat F |")
    print("|---|---:|---:|---:|---:|")
    for relation in RELATIONS + ("all",):
        chosen = [r for r in rows if relation in (r[1], "all")]
        if chosen:
            beat_f, down_f, oracle = np.mean([r[2:] for r in chosen], axis=0)
            print(f"| {relation} | {len(chosen)} | {beat_f:.3f} | {down_f:.3f} | "
                  f"{oracle:.3f} |")
    if args.per_track:
        for track_id, relation, beat_f, down_f, oracle in rows:
            print(f"{track_id}\t{relation}\tbeat {beat_f:.3f}\tdownbeat {down_f:.3f}\t"
                  f"oracle {oracle:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
