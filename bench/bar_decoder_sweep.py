"""Settings of the package tracker's decoder against madmom's beats and bars on real music.

The tracker network runs once per track (``BeatTracker.mel_activations``); the decoding
(:func:`msaf_learned_ssm.beats.decode_beats`) is then redone for each setting of its bar
decoder (``p_restart``: how easily a bar ends early; ``meters``) and of its tempo-octave
check (``--double-ratio``: :func:`msaf_learned_ssm.beats.offbeat_ratio` above which the
beats are redone at twice the tempo; ``none``: never) and of the harmonic-change cue
(``--harmony``: its weight in the downbeat evidence, 0: off; ``--harmony-context``). Scores: ``mir_eval.beat.f_measure`` at 150 ms (beats / downbeats) against
madmom's beats on unlabelled real tracks (cached by ``bench/beat_agreement.py`` in
``cache/madmom_beats``; tracks without a cache entry are skipped) and against the
references on band renders. Choose on the TRAIN tracks; the held-out ones confirm once.

Usage::

    python bench/bar_decoder_sweep.py --ids corpora/unlabeled/train_ids.txt
    python bench/bar_decoder_sweep.py --ids corpora/unlabeled/heldout_ids.txt --p-restart 0.02 0.005
    python bench/bar_decoder_sweep.py --ids corpora/unlabeled/train_ids.txt --p-restart 0.005 \
        --double-ratio none 0.5 0.6 0.7 --tracker runs/beats_heavy/beats.pt
    python bench/bar_decoder_sweep.py --ids corpora/unlabeled/train_ids.txt --p-restart 0.005 \
        --harmony 0 0.2 0.3 0.35 0.4 0.5 --harmony-context 1 2 3
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def main(argv=None) -> int:
    from beat_agreement import cached_madmom_beats, f_measures

    from msaf_learned_ssm.audio import load_audio
    from msaf_learned_ssm import beats as beats_module
    from msaf_learned_ssm.beats import BeatTracker, decode_beats
    from msaf_learned_ssm.features import log_mel_and_chroma, standardize_bands
    from msaf_learned_ssm_jams.beats import read_beats

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--unlabeled", type=Path, default=ROOT / "corpora" / "unlabeled")
    parser.add_argument("--ids", type=Path, required=True, help="unlabelled track ids")
    parser.add_argument("--renders", type=Path, default=ROOT / "corpora" / "pop909_band")
    parser.add_argument("--render-ids", type=Path,
                        default=ROOT / "training" / "splits" / "val.txt")
    parser.add_argument("--max-renders", type=int, default=12, help="first N render ids")
    parser.add_argument("--cache", type=Path, default=ROOT / "cache" / "madmom_beats")
    parser.add_argument("--p-restart", type=float, nargs="+",
                        default=[0.005, 0.02, 0.05, 0.15])
    parser.add_argument("--double-ratio", nargs="+", default=["none"],
                        help="tempo-octave check thresholds ('none': off)")
    parser.add_argument("--meters", choices=["3/4", "both"], default="both",
                        help="bar decoder metres: 3 and 4 only, or also with 2")
    parser.add_argument("--harmony", type=float, nargs="+",
                        default=[beats_module.HARMONY_WEIGHT],
                        help="weights of the harmonic-change cue (0: off)")
    parser.add_argument("--harmony-context", type=int, nargs="+",
                        default=[beats_module.HARMONY_CONTEXT],
                        help="beats on each side compared by the harmonic-change cue")
    parser.add_argument("--tracker", type=Path, default=None,
                        help="tracker file (default: the shipped one)")
    parser.add_argument("--downbeat-prior", nargs="+", default=["none"],
                        help="bar decoder's downbeat prior (beats.bar_positions; 'none': "
                             "the strengths as they are)")
    args = parser.parse_args(argv)
    ratios = [None if r == "none" else float(r) for r in args.double_ratio]
    priors = [None if r == "none" else float(r) for r in args.downbeat_prior]

    tracker = BeatTracker(args.tracker)
    frontend = tracker.config.model_config

    def activations(path: Path):
        mel, chroma = log_mel_and_chroma(load_audio(path, frontend.sample_rate), frontend)
        return (*tracker.mel_activations(standardize_bands(mel)), chroma)

    def decode(acts, times, chroma, p_restart, meters, ratio, weight, context, prior):
        beats = decode_beats(acts, times, tracker.config, p_restart, meters, ratio,
                             chroma=(chroma, frontend.frame_sec), harmony_weight=weight,
                             harmony_context=context, downbeat_prior=prior)
        return beats.times, beats.positions

    sets = {"real vs madmom": [], "renders vs references": []}
    for track_id in args.ids.read_text().split():
        audio = next((args.unlabeled / "audio").glob(track_id + ".*"), None)
        if audio is None:
            continue
        cached = cached_madmom_beats(audio, args.cache)
        if cached is not None:
            sets["real vs madmom"].append((*activations(audio), *cached))
    if args.render_ids.is_file():
        for track_id in args.render_ids.read_text().split()[:args.max_renders]:
            audio = args.renders / "audio" / f"{track_id}.flac"
            if audio.is_file():
                ref = read_beats(str(args.renders / "references" / f"{track_id}.jams"))
                sets["renders vs references"].append((*activations(audio), *ref))
    print("tracks:", {k: len(v) for k, v in sets.items()})
    print(f"tracker: {args.tracker or 'the shipped beats.pt'}")
    print("| p_restart | meters | double-tempo ratio | harmony weight | context | "
          "downbeat prior | " + " | ".join(f"{k}: beat F / downbeat F" for k in sets) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(sets))
    meter_sets = [(3, 4)] if args.meters == "3/4" else [(3, 4), (2, 3, 4)]
    for p_restart, meters, ratio, weight, context, prior in itertools.product(
            args.p_restart, meter_sets, ratios, args.harmony, args.harmony_context, priors):
        cells = []
        for items in sets.values():
            scores = [f_measures(rt, rp, *decode(a, t, c, p_restart, meters, ratio, weight,
                                                 context, prior), 0.15)
                      for a, t, c, rt, rp in items]
            mean = np.mean(scores, axis=0) if scores else (np.nan, np.nan)
            cells.append(f"{mean[0]:.3f} / {mean[1]:.3f}")
        print(f"| {p_restart:g} | {'/'.join(map(str, meters))} | "
              f"{'off' if ratio is None else ratio} | {weight:g} | {context} | "
              f"{'off' if prior is None else prior} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
