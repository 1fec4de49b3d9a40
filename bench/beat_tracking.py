"""Beat and downbeat tracking accuracy on any corpus with beat references: the package's
tracker, madmom's (when installed) and librosa's, in one table.

For every track of each ``--corpus`` (MSAF layout, ``audio/`` and ``references/NAME.jams``,
or audio with same-stem ``.jams`` beside it; ``DIR:IDS`` keeps the ids listed in IDS) whose
reference has a ``beat`` annotation (the first, or ``--annotator``'s), each tracker runs on
the decoded file as the Analyzer runs it:

- ``package``: the shipped ``beats.pt`` (or ``--tracker FILE``) with its bar decoder and
  chord cue (``BeatTracker.track``, 22.05 kHz);
- ``madmom``: ``RNNDownBeatProcessor`` + ``DBNDownBeatTrackingProcessor`` (3/4 and 4/4) on
  the file decoded at 44.1 kHz (the ``[madmom]`` extra; ``--beat-cache DIR`` reuses the
  beats ``bench/beat_agreement.py`` cached, keyed by the file's content);
- ``librosa``: ``librosa.beat.beat_track``, every 4th beat from its first counted as a
  downbeat (the naive bar grid a user would get from it).

Scores: ``mir_eval.beat.f_measure`` (first 5 s trimmed, as mir_eval does) at each
``--windows`` (default 70 ms and 150 ms: human annotations of real records often lag the
audio by about 0.1 s, which the 70 ms window punishes in every tracker alike), for beats
and for downbeats, mean over tracks; downbeat F only over tracks whose reference gives bar
positions. Also the tempo relation of each tracker to the reference (median beat periods
within 4 %: same, half, double, other) and its seconds per audio minute on this machine.

Tracks are scored ``--jobs`` at a time (default: one per core), each in a worker process
with one thread (madmom, about 25 s per audio minute on one core, is what takes the time).
A track that fails to decode, or whose reference has no usable beat annotation, is reported
on one line and skipped. Nothing is written unless ``--out`` (markdown) or ``--csv`` (one
row per track and tracker) is given.

Usage::

    python bench/beat_tracking.py --corpus HELD_OUT_RECORDINGS --out beats_heldout.md
    python bench/beat_tracking.py --corpus corpora/pop909_band:training/splits/val.txt \\
        --trackers package librosa --windows 0.07
    python bench/beat_tracking.py --set "band val=corpora/pop909_band:training/splits/val.txt"
"""

from __future__ import annotations

import argparse
import csv
import importlib
import io
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

#: Trackers this bench knows, in table order.
TRACKERS = ("package", "madmom", "librosa")
#: Default F-measure windows (s).
WINDOWS = (0.07, 0.15)
#: Tempo relations (``tempo_relation``), in table order.
RELATIONS = ("same", "half", "double", "other")
CSV_FIELDS = ("corpus", "track", "tracker", "window", "beat_F", "downbeat_F", "tempo",
              "seconds", "audio_seconds")


def f_measures(ref_beats, ref_down, est_beats, est_down, window: float = 0.07
               ) -> tuple[float, float]:
    """(beat F, downbeat F), first 5 s trimmed as mir_eval does, ``window`` in seconds."""
    import mir_eval

    trim = mir_eval.beat.trim_beats
    return (float(mir_eval.beat.f_measure(trim(np.asarray(ref_beats, float)),
                                          trim(np.asarray(est_beats, float)), window)),
            float(mir_eval.beat.f_measure(trim(np.asarray(ref_down, float)),
                                          trim(np.asarray(est_down, float)), window)))


def tempo_relation(ref_times, est_times) -> str:
    """``same``, ``half`` (the estimate's beats twice as long), ``double`` or ``other``:
    the ratio of the median beat periods, within 4 %."""
    if len(ref_times) < 3 or len(est_times) < 3:
        return "other"
    ratio = np.median(np.diff(est_times)) / np.median(np.diff(ref_times))
    for name, target in (("same", 1.0), ("half", 2.0), ("double", 0.5)):
        if abs(ratio / target - 1) <= 0.04:
            return name
    return "other"


# ---- trackers ----------------------------------------------------------------------------

@dataclass
class Tracker:
    """A tracker as this bench runs it: ``run(path) -> (times, positions)``."""

    name: str
    description: str
    run: Callable[[Path], tuple]


def package_tracker(path: Optional[str]) -> Tracker:
    """The package's tracker (``path``: a tracker file; None: the shipped one)."""
    from msaf_learned_ssm.audio import load_audio
    from msaf_learned_ssm.beats import DEFAULT_BEAT_MODEL, BeatTracker, package_tracker_identity

    tracker = BeatTracker(path)
    rate = tracker.config.model_config.sample_rate
    identity = package_tracker_identity(path or DEFAULT_BEAT_MODEL)

    def run(audio: Path) -> tuple:
        beats = tracker.track(load_audio(audio, rate), n_threads=1)
        return beats.times, beats.positions

    return Tracker("package", f"`{identity['file']}` sha256:{(identity['sha256'] or '')[:16]}, "
                   f"decoder {identity['decoder']}", run)


def madmom_tracker(cache: Optional[Path]) -> Tracker:
    """madmom's downbeat tracker (ConfigError naming the extra when it is not installed);
    ``cache``: a ``bench/beat_agreement.py`` cache to read (and fill)."""
    from msaf_learned_ssm.audio import load_audio
    from msaf_learned_ssm.madmom_beats import MADMOM_SAMPLE_RATE, MadmomTracker, madmom_version

    tracker = MadmomTracker()

    def run(audio: Path) -> tuple:
        if cache is not None:
            from beat_agreement import madmom_beats
            times, positions, _ = madmom_beats(audio, tracker, cache)
            return times, positions
        beats = tracker.track(load_audio(audio, MADMOM_SAMPLE_RATE), MADMOM_SAMPLE_RATE)
        return beats.times, beats.positions

    cached = "" if cache is None else (f"; beats read from `{cache}` where cached (its "
                                       "time then excludes tracking)")
    return Tracker("madmom", f"madmom {madmom_version()}, RNNDownBeatProcessor + "
                   f"DBNDownBeatTrackingProcessor (3/4, 4/4){cached}", run)


def librosa_tracker() -> Tracker:
    """``librosa.beat.beat_track`` (22.05 kHz, hop 512), every 4th beat a downbeat."""
    import librosa

    from msaf_learned_ssm.audio import load_audio

    def run(audio: Path) -> tuple:
        y = load_audio(audio, 22050)
        _, frames = librosa.beat.beat_track(y=y, sr=22050, hop_length=512)
        times = librosa.frames_to_time(frames, sr=22050, hop_length=512)
        positions = np.where(np.arange(len(times)) % 4 == 0, 1, 2)
        return times, positions

    return Tracker("librosa", f"librosa {librosa.__version__} `beat.beat_track`, every 4th "
                   "beat a downbeat", run)


def load_trackers(names: Sequence[str], tracker_file: Optional[str],
                  cache: Optional[Path], say: Callable[[str], None]) -> list[Tracker]:
    """The named trackers; ``madmom`` left out with one line when it is not installed and
    was not asked for by name (``"auto-madmom"``, the default list)."""
    from msaf_learned_ssm.errors import ConfigError
    from msaf_learned_ssm.madmom_beats import madmom_available

    out = []
    for name in names:
        if name == "package":
            out.append(package_tracker(tracker_file))
        elif name == "librosa":
            out.append(librosa_tracker())
        elif name == "madmom":
            out.append(madmom_tracker(cache))
        elif name == "auto-madmom":
            if madmom_available():
                out.append(madmom_tracker(cache))
            else:
                say("madmom is not installed: its rows are left out "
                    "(pip install 'msaf-learned-ssm[madmom]' adds them)")
        else:
            raise ConfigError(f"unknown tracker {name!r} (choose from {', '.join(TRACKERS)})")
    return out


# ---- scoring ------------------------------------------------------------------------------

@dataclass
class TrackerScores:
    """What one tracker scored on one corpus."""

    rows: list = field(default_factory=list)  # dicts of CSV_FIELDS
    seconds: float = 0.0
    audio_seconds: float = 0.0


def score_track(ref_times: np.ndarray, ref_pos: np.ndarray, est: tuple,
                windows: Sequence[float]) -> list[tuple]:
    """``(window, beat F, downbeat F or nan, tempo relation)`` per window; downbeat F is
    nan when the reference gives no bar positions."""
    est_times, est_pos = np.asarray(est[0], float), np.asarray(est[1])
    has_bars = bool(np.any(ref_pos == 1))
    relation = tempo_relation(ref_times, est_times)
    out = []
    for window in windows:
        # Without bar positions the downbeat score is not computed (mir_eval would warn
        # about an empty reference): the beats stand in and the result is dropped.
        ref_down = ref_times[ref_pos == 1] if has_bars else ref_times
        beat_f, down_f = f_measures(ref_times, ref_down, est_times, est_times[est_pos == 1],
                                    window)
        out.append((window, beat_f, down_f if has_bars else float("nan"), relation))
    return out


#: Trackers loaded in this process, by the settings that made them (worker processes load
#: theirs once, at their first track).
_LOADED: dict = {}


@dataclass(frozen=True)
class TrackScorer:
    """Scores one track with every tracker. Picklable (plain settings), so that worker
    processes run it; each process loads the trackers once.

    Attributes
    ----------
    names : tuple of str
        Trackers (:data:`TRACKERS`; ``madmom`` only when it is installed).
    tracker_file : str or None
        The package tracker's file (None: the shipped one).
    cache : Path or None
        madmom's beat cache.
    windows : tuple of float
        F-measure windows (s).
    annotator : str or None
        The reference beat annotation's annotator (None: the first).
    """

    names: tuple
    tracker_file: Optional[str]
    cache: Optional[Path]
    windows: tuple
    annotator: Optional[str]

    def trackers(self) -> list[Tracker]:
        key = (self.names, self.tracker_file, self.cache)
        if key not in _LOADED:
            _LOADED[key] = load_trackers(self.names, self.tracker_file, self.cache, print)
        return _LOADED[key]

    def __call__(self, track: tuple) -> dict:
        """``track``: ``(track id, audio path, reference path or None)``. Returns
        ``{"rows": [...], "skipped": [messages], "seconds": {tracker: s},
        "audio_seconds": float}`` (rows without the corpus name)."""
        import soundfile as sf

        from msaf_learned_ssm.errors import LearnedSSMError
        from msaf_learned_ssm_jams.beats import read_beats

        track_id, audio, reference = track
        out = {"rows": [], "skipped": [], "seconds": {}, "audio_seconds": 0.0}
        if reference is None:
            out["skipped"].append(f"skipped: {audio}: no reference JAMS")
            return out
        try:
            ref_times, ref_pos = read_beats(reference, self.annotator)
        except LearnedSSMError as exc:
            out["skipped"].append(f"skipped: {exc}")
            return out
        if len(ref_times) < 3:
            out["skipped"].append(f"skipped: {reference}: fewer than 3 reference beats")
            return out
        try:
            duration = float(sf.info(str(audio)).duration)
        except Exception:  # noqa: BLE001 - formats libsndfile lacks: the decoder says below
            duration = float("nan")
        out["audio_seconds"] = duration if np.isfinite(duration) else 0.0
        for tracker in self.trackers():
            t0 = time.perf_counter()
            try:
                est = tracker.run(audio)
            except LearnedSSMError as exc:
                out["skipped"].append(f"skipped ({tracker.name}): {exc}")
                continue
            spent = time.perf_counter() - t0
            out["seconds"][tracker.name] = spent
            for window, beat_f, down_f, relation in score_track(ref_times, ref_pos, est,
                                                                self.windows):
                out["rows"].append({"track": track_id, "tracker": tracker.name,
                                    "window": window, "beat_F": beat_f, "downbeat_F": down_f,
                                    "tempo": relation, "seconds": spent,
                                    "audio_seconds": duration})
        return out


def score_corpus(name: str, tracks: Sequence, scorer: TrackScorer, jobs: int,
                 say: Callable[[str], None]) -> dict:
    """``{tracker name: TrackerScores}`` over ``tracks`` (candidates' ``CorpusTrack``),
    ``jobs`` tracks at a time in worker processes (one: in this process)."""
    from tqdm import tqdm

    from msaf_learned_ssm.errors import LearnedSSMError
    from msaf_learned_ssm.workers import map_in_processes

    items = [(t.track_id, t.audio, t.reference) for t in tracks]
    if jobs > 1 and len(items) > 1:
        results = map_in_processes(scorer, items, workers=min(jobs, len(items)), threads=1,
                                   describe=lambda item: str(item[1]))
    else:
        results = ((item, scorer(item)) for item in items)
    scores = {n: TrackerScores() for n in scorer.names}
    for (_, audio, _), result in tqdm(results, total=len(items), desc=name, unit="track"):
        if isinstance(result, LearnedSSMError):
            say(f"skipped: {audio}: {result}")
            continue
        for line in result["skipped"]:
            say(line)
        for tracker, spent in result["seconds"].items():
            scores[tracker].seconds += spent
            scores[tracker].audio_seconds += result["audio_seconds"]
        for row in result["rows"]:
            scores[row["tracker"]].rows.append({"corpus": name, **row})
    return scores


def table_lines(results: dict, trackers: Sequence[Tracker], windows: Sequence[float]
                ) -> list[str]:
    """The markdown table: one row per corpus and tracker."""
    head = ["corpus", "tracker", "tracks"]
    for w in windows:
        head += [f"beat F {w * 1000:.0f} ms", f"downbeat F {w * 1000:.0f} ms"]
    head += ["tempo same / half / double / other", "s / audio min"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for corpus, scores in results.items():
        for tracker in trackers:
            s = scores[tracker.name]
            first = [r for r in s.rows if r["window"] == windows[0]]
            if not first:
                continue
            cells = [corpus, tracker.name, str(len(first))]
            for w in windows:
                rows = [r for r in s.rows if r["window"] == w]
                down = [r["downbeat_F"] for r in rows if np.isfinite(r["downbeat_F"])]
                cells += [f"{np.mean([r['beat_F'] for r in rows]):.3f}",
                          f"{np.mean(down):.3f}" if down else "-"]
            counts = [sum(r["tempo"] == rel for r in first) for rel in RELATIONS]
            cells.append(" / ".join(map(str, counts)))
            cells.append(f"{60 * s.seconds / s.audio_seconds:.2f}" if s.audio_seconds else "-")
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def csv_text(results: dict) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for scores in results.values():
        for s in scores.values():
            for row in s.rows:
                writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v)
                                 for k, v in row.items()})
    return buffer.getvalue()


# ---- command line -------------------------------------------------------------------------

def parse_corpora(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list:
    """``[(name, root, ids or None)]`` from ``--corpus DIR[:IDS]`` and ``--set NAME=DIR:IDS``."""
    from candidates import split_corpus_spec

    specs = []
    for value in args.corpus:
        root, ids = split_corpus_spec(value)
        specs.append((root.name + (f" ({ids.stem})" if ids else ""), root, ids))
    for value in args.set:
        if "=" not in value:
            parser.error(f"--set {value!r}: expected NAME=CORPUS[:IDS]")
        name, rest = value.split("=", 1)
        specs.append((name, *split_corpus_spec(rest)))
    if not specs:
        parser.error("give at least one --corpus (or --set)")
    return specs


def main(argv: Optional[Sequence[str]] = None) -> int:
    import warnings

    import torch

    from candidates import corpus_tracks
    from msaf_learned_ssm.errors import LearnedSSMError
    from msaf_learned_ssm.fileio import atomic_write_text
    from msaf_learned_ssm.parallel import default_threads

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", action="append", default=[], metavar="DIR[:IDS]",
                        help="a corpus with beat references (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=DIR[:IDS]",
                        help="a corpus with a name for the table (repeatable)")
    parser.add_argument("--trackers", nargs="+", default=None, choices=TRACKERS,
                        help="default: package, madmom when installed, librosa")
    parser.add_argument("--tracker", default=None, metavar="FILE",
                        help="the package tracker's file (default: the shipped beats.pt)")
    parser.add_argument("--annotator", default=None,
                        help="the reference beat annotation's annotator (default: the first)")
    parser.add_argument("--windows", type=float, nargs="+", default=list(WINDOWS),
                        help="F-measure windows in seconds (default 0.07 0.15)")
    parser.add_argument("--beat-cache", type=Path, default=None, metavar="DIR",
                        help="madmom's beats cached by bench/beat_agreement.py (read and filled)")
    parser.add_argument("--jobs", type=int, default=default_threads(),
                        help="tracks scored at a time, each in its own process with one "
                             "thread (default: one per core)")
    parser.add_argument("--out", type=Path, default=None, help="markdown report")
    parser.add_argument("--csv", type=Path, default=None, help="per-track rows (CSV)")
    args = parser.parse_args(argv)
    if not args.windows or not all(0 < w <= 1 for w in args.windows):
        parser.error("--windows must be in (0, 1] s")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    specs = parse_corpora(args, parser)
    torch.set_num_threads(1)
    from tqdm import tqdm

    def say(line: str) -> None:  # on its own line, between the progress bars' updates
        tqdm.write(line, file=sys.stderr)

    names = args.trackers or ["package", "auto-madmom", "librosa"]
    started = time.perf_counter()
    try:
        trackers = load_trackers(names, args.tracker, args.beat_cache, say)
        # Worker processes unpickle the scorer by its module's importable name, never
        # "__main__" (hidden from them, msaf_learned_ssm.workers).
        scorer = importlib.import_module("beat_tracking").TrackScorer(
            tuple(t.name for t in trackers), args.tracker, args.beat_cache,
            tuple(args.windows), args.annotator)
        _LOADED[(scorer.names, scorer.tracker_file, scorer.cache)] = trackers
        results = {}
        with warnings.catch_warnings():
            # librosa and mir_eval warn per track on short or beatless audio; the scores
            # say it (F = 0), the warnings would bury the progress bars.
            warnings.simplefilter("ignore", UserWarning)
            for name, root, ids in specs:
                tracks, missing = corpus_tracks(root, ids)
                for track_id in missing:
                    say(f"skipped: {ids}: {track_id}: no audio file in {root}")
                results[name] = score_corpus(name, tracks, scorer, args.jobs, say)
    except LearnedSSMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    wall = time.perf_counter() - started
    table = table_lines(results, trackers, args.windows)
    if args.out is not None:
        command = "python bench/beat_tracking.py " + " ".join(
            shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
        report = ["# Beat and downbeat tracking", "",
                  f"Command: `{command}`", "",
                  f"Date: {datetime.now().isoformat(timespec='seconds')}; wall time "
                  f"{wall:.0f} s", ""] + table + [
                  "", "- Cells: mean over tracks of `mir_eval.beat.f_measure` (first 5 s "
                  "trimmed); downbeat F over tracks whose reference gives bar positions.",
                  "- Tempo: median beat period against the reference's, within 4 %.",
                  "- `s / audio min`: seconds per minute of audio on this machine, decoding "
                  f"included, one thread per process ({args.jobs} tracks at a time)."]
        report += [f"- `{t.name}`: {t.description}." for t in trackers]
        atomic_write_text(args.out, "\n".join(report) + "\n")
        say(f"wrote {args.out}")
    if args.csv is not None:
        atomic_write_text(args.csv, csv_text(results))
        say(f"wrote {args.csv}")
    print("\n".join(table))  # after the files: a closed stdout (| head) loses nothing
    return 0


if __name__ == "__main__":
    sys.exit(main())
