"""Score candidate models on any corpora: boundary hit rates against the references and
agreement with teacher models, each model at its own settings and with bar-line boundaries.

For each audio file the audio is decoded, its patches computed (once per front-end: all
shipped models share one) and its beats tracked once; each model's forward runs once and
its novelty peaks (its own peak settings, ``sync="frame"``) are then placed two ways:

- ``own``: as the model's file says (its ``sync``: frame, beat or bar);
- ``bar``: moved to the nearest estimated downbeat (``sync="bar"``,
  :func:`msaf_learned_ssm.sync.sync_boundaries`), as ``bench/sync_modes.py`` places them.

Scores are trimmed HR0.5F / HR3F (``mir_eval.segment.detection``, ``trim=True``), mean
over tracks, against:

- the references, for tracks with a ``references/NAME.jams`` (or ``NAME.jams`` beside the
  audio) holding a segment annotation (``--namespace``, default ``segment_open``);
- the teachers (``--teachers``, default ``author-nbatt1,author-nbatt3``), on corpora without
  references, or on every corpus when ``--teachers`` is given: the teachers' boundaries are
  the peaks of their mean novelty with the author's settings (``PeakConfig()``, 10 / 7 /
  1.35, as the trainer's evaluation), and ``SSM r`` is the Pearson correlation between the
  model's SSM and the teachers' mean SSM over the upper triangle (k=1), mean over tracks.

A corpus is a folder in MSAF's layout (``audio/``, optionally ``references/``) or a folder
of audio files with optional same-stem ``.jams`` beside them; ``DIR:IDS`` (or ``--ids IDS``
after ``--corpus DIR``) keeps the track ids listed in ``IDS``. Nothing is cached or
precomputed. A file that fails to decode, or whose reference is unusable, is reported on one
line and skipped.

Files are scored ``--jobs`` at a time (threads sharing the loaded models, default one per
core), each with ``--threads`` torch threads (default 1). A teacher that is also a candidate
is not run twice.

Prints the tables and writes them to ``--out`` (markdown), with the command, the date, the
tracks scored and the timing; ``--csv`` adds one row per track, model, target and placement.

Usage::

    python bench/candidates.py --models default pop909-band author-nbatt1 runs/x/model.pt \\
        --corpus corpora/pop909_band:training/splits/val.txt --corpus ../shared/data/sargon \\
        --corpus corpora/unlabeled --ids corpora/unlabeled/heldout_ids.txt \\
        --out bench/results/candidates.md [--csv bench/results/candidates.csv]
    python bench/candidates.py --models all --corpus NEW_CORPUS --out new.md   # every shipped model
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import shlex
import sys
import threading
import time
import warnings
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

#: Teachers used when ``--teachers`` is not given (on corpora without references).
DEFAULT_TEACHERS = ("author-nbatt1", "author-nbatt3")
#: Placements of each model's boundaries (see the module docstring).
PLACEMENTS = ("own", "bar")
#: Columns of the ``--csv`` file.
CSV_FIELDS = ("corpus", "track", "model", "against", "placement", "HR0.5F", "HR3F", "ssm_r")


# ---- inputs -------------------------------------------------------------------------------

@dataclass(frozen=True)
class CorpusTrack:
    """One audio file of a corpus and its reference JAMS (None when it has none)."""

    track_id: str
    audio: Path
    reference: Optional[Path]


@dataclass
class Corpus:
    """A corpus as given on the command line, and its tracks.

    Attributes
    ----------
    name : str
        Column name in the tables (folder name, plus the id list's stem).
    tracks : list of CorpusTrack
    labelled : bool
        Whether any track has a reference (else only the teachers score it).
    missing : list of str
        Listed ids without audio (reported, not scored).
    """

    name: str
    root: Path
    ids: Optional[Path]
    tracks: list
    labelled: bool
    missing: list = field(default_factory=list)


def split_corpus_spec(value: str) -> tuple[Path, Optional[Path]]:
    """``DIR[:IDS]`` -> ``(DIR, IDS or None)``; a folder whose own name holds a colon stays
    whole."""
    root, ids = value, None
    if not Path(value).exists() and ":" in value:
        root, ids = value.rsplit(":", 1)
    return Path(root), Path(ids) if ids else None


class _CorpusAction(argparse.Action):
    """``--corpus DIR[:IDS]``: appends ``[DIR, IDS or None]``."""

    def __call__(self, parser, namespace, value, option_string=None):
        getattr(namespace, self.dest).append(list(split_corpus_spec(value)))


class _IdsAction(argparse.Action):
    """``--ids FILE``: the id list of the ``--corpus`` given just before."""

    def __call__(self, parser, namespace, value, option_string=None):
        if not namespace.corpus:
            parser.error("--ids must follow the --corpus it restricts")
        if namespace.corpus[-1][1] is not None:
            parser.error(f"--ids {value}: {namespace.corpus[-1][0]} already has an id list")
        namespace.corpus[-1][1] = Path(value)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    from msaf_learned_ssm.parallel import default_threads

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", required=True,
                        help="shipped names (default, author-nbatt1...) or model files; "
                             "'all': default and every other shipped model")
    parser.add_argument("--corpus", action=_CorpusAction, default=[], required=True,
                        metavar="DIR[:IDS]", help="a corpus folder (repeatable)")
    parser.add_argument("--ids", action=_IdsAction, metavar="FILE",
                        help="track ids (one per line) of the --corpus just before")
    parser.add_argument("--annotator", default=None,
                        help="annotator name, or index among the annotations (default: first)")
    parser.add_argument("--namespace", default="segment_open",
                        help="JAMS namespace of the references (default segment_open)")
    parser.add_argument("--teachers", default=None,
                        help="comma-separated teacher models; given: agreement on every "
                             f"corpus (default {','.join(DEFAULT_TEACHERS)}, on corpora "
                             "without references)")
    parser.add_argument("--tracker", default=None,
                        help="beat tracker file (default shipped), or 'madmom' (optional "
                             "install; tracks from the audio at 44.1 kHz)")
    parser.add_argument("--beat-cache", type=Path, default=None, metavar="DIR",
                        help="with --tracker madmom: keep madmom's beats here, by the audio "
                             "file's content (about 40 s per three-minute track on one core; "
                             "bench/beat_agreement.py fills the same cache)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, auto...")
    parser.add_argument("--jobs", type=int, default=default_threads(),
                        help="files scored at a time, in threads (default: the cores this "
                             "process may use)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch, decoding and STFT threads per file (default 1: on a "
                             "shared 2-core machine 2 threads made the models 5x slower, "
                             "waiting on each other; files in parallel do not wait)")
    parser.add_argument("--out", type=Path, required=True, help="markdown report")
    parser.add_argument("--csv", type=Path, default=None, help="per-track rows (CSV)")
    args = parser.parse_args(argv)
    if args.annotator is not None and args.annotator.isdigit():
        args.annotator = int(args.annotator)
    return args


def corpus_tracks(root: Path, ids: Optional[Path] = None) -> tuple[list, list]:
    """Audio files of a corpus folder and their reference JAMS.

    Parameters
    ----------
    root : Path
        MSAF layout (``audio/``, optional ``references/NAME.jams``), or a folder of audio
        files with optional ``NAME.jams`` beside them.
    ids : Path, optional
        Keep only the track ids (file stems) listed there (one per line, ``#`` comments).

    Returns
    -------
    tracks : list of CorpusTrack
        Sorted by file name (in the order of ``ids`` when given).
    missing : list of str
        Listed ids that have no audio file.

    Raises
    ------
    AnnotationError
        No such folder, no audio in it, an unreadable id list, or no listed track with
        audio (naming the file).
    """
    from msaf_learned_ssm.errors import AnnotationError
    from msaf_learned_ssm_training.corpus import AUDIO_EXTENSIONS, read_id_list

    if not root.is_dir():
        raise AnnotationError(f"{root}: no such corpus folder")
    msaf_layout = (root / "audio").is_dir()
    audio_dir = root / "audio" if msaf_layout else root
    ref_dir = root / "references" if msaf_layout else root
    found = {}
    for audio in sorted(audio_dir.iterdir()):
        if audio.suffix.lower() in AUDIO_EXTENSIONS and not audio.name.startswith("."):
            ref = ref_dir / f"{audio.stem}.jams"
            found.setdefault(audio.stem, CorpusTrack(audio.stem, audio,
                                                     ref if ref.is_file() else None))
    if not found:
        raise AnnotationError(f"{audio_dir}: no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    if ids is None:
        return list(found.values()), []
    try:
        wanted = read_id_list(ids)
    except (OSError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{ids}: cannot read the id list ({exc})") from None
    tracks = [found[i] for i in wanted if i in found]
    if not tracks:
        raise AnnotationError(f"{ids}: none of the {len(wanted)} listed tracks has audio in "
                              f"{audio_dir}")
    return tracks, [i for i in wanted if i not in found]


def load_corpora(specs: Sequence) -> list[Corpus]:
    """:class:`Corpus` of each ``[DIR, IDS]``, with unique names."""
    corpora, names = [], set()
    for root, ids in specs:
        tracks, missing = corpus_tracks(root, ids)
        name = root.resolve().name + (f" ({ids.stem})" if ids else "")
        base, k = name, 2
        while name in names:
            name, k = f"{base} #{k}", k + 1
        names.add(name)
        corpora.append(Corpus(name, root, ids, tracks,
                              any(t.reference is not None for t in tracks), missing))
    return corpora


def reference_boundaries(path: Path, namespace: str, annotator) -> np.ndarray:
    """Boundary times (s) of a reference JAMS, 0 and the end included.

    Raises
    ------
    AnnotationError
        Unreadable, no such annotation, invalid segments, or no inner boundary (every
        trimmed hit rate would be 0).
    """
    from msaf_learned_ssm.errors import AnnotationError
    from msaf_learned_ssm_jams.segments import read_segments

    intervals, _ = read_segments(path, namespace=namespace, annotator=annotator)
    bounds = np.unique(intervals.ravel())
    if len(bounds) < 3:
        raise AnnotationError(f"{path}: the reference has no inner boundary")
    return bounds


# ---- models -------------------------------------------------------------------------------

@dataclass
class Candidate:
    """A model as named on the command line, loaded (:class:`~msaf_learned_ssm.Analyzer`)."""

    label: str
    analyzer: object

    @property
    def key(self) -> tuple:
        """Same file and peak settings: same frame boundaries (one forward for both)."""
        return self.analyzer.identity["sha256"], self.analyzer.peaks


def expand_models(models: Sequence[str]) -> list[str]:
    """``models`` with ``"all"`` replaced by ``"default"`` and every other shipped model
    (:data:`~msaf_learned_ssm.model_files.NAMED_MODELS`, the one ``default`` stands for
    left out: it is the same file), in that order."""
    from msaf_learned_ssm.model_files import DEFAULT_MODEL, NAMED_MODELS

    every = ["default"] + [n for n in NAMED_MODELS if n != DEFAULT_MODEL]
    out: list[str] = []
    for model in models:
        if model == "all":
            out += [n for n in every if n not in out]  # named before "all": kept once
        else:
            out.append(model)  # named twice by the user: load_candidates says so
    return out


def load_candidates(models: Sequence[str], device: str, tracker: Optional[str]
                    ) -> list[Candidate]:
    """One :class:`Candidate` per model (``"default"`` labelled with what it stands for).

    Raises
    ------
    LearnedSSMError
        A model that does not load, or a model named twice.
    """
    from msaf_learned_ssm.errors import ConfigError
    from msaf_learned_ssm.inference import Analyzer

    if len(set(models)) < len(models):
        raise ConfigError(f"a model is named twice: {' '.join(models)}")
    out = []
    for model in models:
        # The bars are placed here from the tracker's beats (file_inputs), not by the
        # Analyzer: its tracker is the package's (for its front-end check) or a file.
        analyzer = Analyzer(model, device,
                            beat_model=tracker if tracker not in (None, "madmom") else "package")
        label = f"default ({analyzer.identity['name']})" if model == "default" else model
        out.append(Candidate(label, analyzer))
    return out


def frontend_key(config) -> str:
    """What decides a model's patches: its front-end settings (JSON)."""
    from msaf_learned_ssm.features import frontend_settings

    return json.dumps(frontend_settings(config), sort_keys=True)


@dataclass
class Teachers:
    """Loaded teachers (:func:`~msaf_learned_ssm_training.teachers.load_teachers`)."""

    models: list
    names: list

    @property
    def config(self):
        return self.models[0].model.config


def load_teacher_set(spec: Optional[str], corpora: Sequence[Corpus]) -> Optional[Teachers]:
    """The teachers, when some corpus is scored against them (see :func:`needs_teachers`)."""
    from msaf_learned_ssm_training.teachers import load_teachers

    if spec is None and all(c.labelled for c in corpora):
        return None
    names = [n.strip() for n in spec.split(",") if n.strip()] if spec else list(DEFAULT_TEACHERS)
    models = load_teachers(names)
    return Teachers(models, [t.name for t in models])


def needs_teachers(corpus: Corpus, teachers_given: bool) -> bool:
    """Teacher agreement on every corpus with ``--teachers``, else on unlabelled ones."""
    return teachers_given or not corpus.labelled


# ---- one file -----------------------------------------------------------------------------

class Stopwatch:
    """Seconds spent per stage, summed over files (and over the worker threads)."""

    def __init__(self) -> None:
        self.seconds = defaultdict(float)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            with self._lock:
                self.seconds[name] += time.perf_counter() - start


def file_inputs(audio: Path, configs: dict, tracker, clock: Stopwatch,
                beat_cache: Optional[Path] = None) -> tuple[dict, object]:
    """Decode once, patches once per front-end, beats once.

    Parameters
    ----------
    configs : dict
        :func:`frontend_key` -> a ModelConfig with that front-end.
    tracker : BeatTracker or MadmomTracker
    beat_cache : Path, optional
        madmom's beats cached here by the file's content (madmom only).

    Returns
    -------
    patches : dict
        :func:`frontend_key` -> Patches (frame grid, log-mel kept, ``beats`` set).
    beats : Beats
    """
    import torch

    from msaf_learned_ssm.audio import load_audio, resample
    from msaf_learned_ssm.features import compute_patches

    threads = torch.get_num_threads()  # one setting bounds all the CPU work, as Analyzer's
    rate = next(iter(configs.values())).sample_rate
    with clock.stage("decode"):
        y = load_audio(audio, rate, threads)
    patches = {}
    with clock.stage("features"):
        for key, config in configs.items():
            signal = y if config.sample_rate == rate else resample(y, rate, config.sample_rate)
            patches[key] = compute_patches(signal, config, threads, keep_mel=True)
    with clock.stage("beats"):
        if getattr(tracker, "name", None) == "madmom":  # from the audio at its own rate
            from msaf_learned_ssm.beats import Beats
            from msaf_learned_ssm.madmom_beats import MADMOM_SAMPLE_RATE

            if beat_cache is not None:
                from beat_agreement import madmom_beats

                beats = Beats(*madmom_beats(Path(audio), tracker, beat_cache)[:2])
            else:
                beats = tracker.track(load_audio(audio, MADMOM_SAMPLE_RATE, threads),
                                      MADMOM_SAMPLE_RATE)
        elif (key := frontend_key(tracker.config.model_config)) in patches:
            beats = tracker.track_patches(patches[key])
        else:
            beats = tracker.track(resample(y, rate, tracker.config.model_config.sample_rate),
                                  threads)
    for p in patches.values():
        p.beats = beats  # beat-grid models centre their patches on them: tracked once
    return patches, beats


def candidate_outputs(candidates: Sequence[Candidate], patches: dict, beats, source: str,
                      clock: Stopwatch) -> dict:
    """Each model's analysis (one forward) and its boundaries at both placements.

    Returns
    -------
    dict
        label -> (Analysis, {"own": boundaries, "bar": boundaries}), boundaries in s.

    Raises
    ------
    ShortAudioWarning
        (as an exception, under :func:`scoring_warnings`) The track is too short or silent
        for a model.
    """
    from msaf_learned_ssm.sync import sync_boundaries

    out, done = {}, {}
    for cand in candidates:
        analyzer = cand.analyzer
        if cand.key not in done:
            with clock.stage("models"):
                done[cand.key] = analyzer.analyze_patches(
                    patches[frontend_key(analyzer.config)], source, sync="frame")
        frame = done[cand.key]
        out[cand.label] = (frame, {
            "own": sync_boundaries(frame.boundaries, beats, analyzer.sync),
            "bar": sync_boundaries(frame.boundaries, beats, "bar")})
    return out


@dataclass
class TeacherReference:
    """The teachers' mean outputs on one track and their boundaries (s)."""

    targets: object  # TeacherTargets
    boundaries: dict  # placement -> boundaries: "own" the frame peaks, "bar" on bar lines


def mean_teacher_outputs(teachers: Teachers, patches, known: dict
                         ) -> tuple[np.ndarray, np.ndarray]:
    """The teachers' mean SSM (T, T) and novelty (T,) on frame-grid ``patches``, as
    :func:`~msaf_learned_ssm_training.teachers.teacher_outputs` gives them, without running
    again a teacher that is also a candidate.

    Parameters
    ----------
    known : dict
        SHA-256 of a model file -> its Analysis of these ``patches`` (a candidate's).
    """
    from msaf_learned_ssm_training.teachers import teacher_outputs

    ssm = np.zeros((len(patches), len(patches)), dtype=np.float32)
    novelty = np.zeros(len(patches), dtype=np.float32)
    for teacher in teachers.models:
        analysis = known.get(teacher.sha256)
        if analysis is not None and analysis.patch_times.shape == patches.times.shape:
            one_ssm, one_novelty = analysis.ssm(), analysis.novelty
        else:
            one_ssm, one_novelty = teacher_outputs([teacher], patches.data)
        ssm += one_ssm
        novelty += one_novelty
    return ssm / len(teachers.models), novelty / len(teachers.models)


def teacher_reference(teachers: Teachers, patches, beats, known: dict, clock: Stopwatch
                      ) -> TeacherReference:
    """Mean SSM and novelty of the teachers (:func:`mean_teacher_outputs`), and the peaks
    of that novelty with the author's settings (``PeakConfig()``), placed at the peaks and
    on bar lines."""
    from msaf_learned_ssm.config import PeakConfig
    from msaf_learned_ssm.peaks import novelty_to_boundaries
    from msaf_learned_ssm.sync import sync_boundaries
    from msaf_learned_ssm_training.teachers import TeacherTargets

    with clock.stage("teachers"):
        ssm, novelty = mean_teacher_outputs(teachers, patches, known)
    _, bounds = novelty_to_boundaries(novelty, patches.times, patches.duration,
                                      teachers.config.grid_hop_sec(patches.times), PeakConfig())
    return TeacherReference(TeacherTargets(ssm, novelty, np.asarray(patches.times, float)),
                            {"own": bounds, "bar": sync_boundaries(bounds, beats, "bar")})


def ssm_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two (T, T) SSMs over the upper triangle (k=1); NaN when
    either is constant there."""
    upper = np.triu_indices(len(a), k=1)
    x, y = a[upper].astype(np.float64), b[upper].astype(np.float64)
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def track_rows(corpus: str, track: CorpusTrack, outputs: dict, ref: Optional[np.ndarray],
               teacher: Optional[TeacherReference]) -> list[dict]:
    """Per-track score rows (:data:`CSV_FIELDS`) of every model and placement."""
    from data_ablation import hit_rates
    from msaf_learned_ssm_training.teachers import align_targets

    rows = []
    for label, (analysis, placed) in outputs.items():
        r = float("nan")
        if teacher is not None:
            ssm, _ = align_targets(teacher.targets, analysis.patch_times)
            r = ssm_correlation(analysis.ssm(), ssm)
        for placement in PLACEMENTS:
            against = ([("reference", ref, float("nan"))] if ref is not None else []) + \
                ([("teachers", teacher.boundaries[placement], r)] if teacher else [])
            for name, target, corr in against:
                h = hit_rates(target, placed[placement])
                rows.append({"corpus": corpus, "track": track.track_id, "model": label,
                             "against": name, "placement": placement,
                             "HR0.5F": h["HR0.5F"], "HR3F": h["HR3F"], "ssm_r": corr})
    return rows


# ---- corpora ------------------------------------------------------------------------------

@dataclass
class Scoring:
    """What the per-file loop needs: models, their front-ends, tracker, teachers."""

    candidates: list
    configs: dict
    tracker: object
    teachers: Optional[Teachers]
    teachers_given: bool
    namespace: str
    annotator: object
    clock: Stopwatch = field(default_factory=Stopwatch)
    beat_cache: Optional[Path] = None


def score_file(corpus: Corpus, track: CorpusTrack, s: Scoring) -> tuple[list, list, bool]:
    """Rows of one file, the one-line reports of what was skipped, and whether the file
    went through the models."""
    from msaf_learned_ssm.errors import LearnedSSMError
    from msaf_learned_ssm.inference import ShortAudioWarning

    skipped, ref = [], None
    with_teachers = needs_teachers(corpus, s.teachers_given)
    if track.reference is not None:
        try:
            ref = reference_boundaries(track.reference, s.namespace, s.annotator)
        except (LearnedSSMError, ValueError) as exc:
            skipped.append(f"reference skipped: {exc}")
    elif corpus.labelled:
        skipped.append(f"reference skipped: {track.audio}: no reference JAMS")
    if ref is None and not with_teachers:
        return [], skipped, False
    try:
        patches, beats = file_inputs(track.audio, s.configs, s.tracker, s.clock,
                                     s.beat_cache)
        outputs = candidate_outputs(s.candidates, patches, beats, str(track.audio), s.clock)
        known = {c.analyzer.identity["sha256"]: outputs[c.label][0] for c in s.candidates}
        teacher = (teacher_reference(s.teachers, patches[frontend_key(s.teachers.config)],
                                     beats, known, s.clock) if with_teachers else None)
    except ShortAudioWarning as exc:  # "<file>: <why>; returning a single segment..."
        return [], skipped + [f"skipped: {str(exc).split('; returning')[0]}"], False
    except LearnedSSMError as exc:
        return [], skipped + [f"skipped: {exc}"], False
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop a long run
        return [], skipped + [f"skipped: {track.audio}: {type(exc).__name__}: {exc}"], False
    with s.clock.stage("scoring"):
        return track_rows(corpus.name, track, outputs, ref, teacher), skipped, True


def score_corpora(corpora: Sequence[Corpus], s: Scoring, jobs: int = 1
                  ) -> tuple[list, list, int]:
    """All rows, the skip reports, and the number of files run through the models.

    ``jobs`` files are scored at a time, in threads (the models are shared; torch, the STFT
    and decoding release the GIL): with one torch thread each, independent files keep the
    cores busier than one file's operations split over threads. Results keep the order of
    the tracks. Run under :func:`scoring_warnings` (its filters are process-wide).
    """
    from tqdm import tqdm

    rows, skipped, n_files = [], [], 0
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for corpus in corpora:
            for i in corpus.missing:
                skipped.append(f"skipped: {corpus.ids}: {i}: no audio file in {corpus.root}")
                tqdm.write(skipped[-1])
            results = pool.map(lambda track: score_file(corpus, track, s), corpus.tracks)
            for file_rows, notes, ran in tqdm(results, total=len(corpus.tracks),
                                              desc=corpus.name, unit="file"):
                for note in notes:
                    tqdm.write(note)
                rows += file_rows
                skipped += notes
                n_files += ran
    return rows, skipped, n_files


@contextlib.contextmanager
def scoring_warnings() -> Iterator[None]:
    """While scoring: a track too short or silent for a model raises (it is reported and
    skipped, not scored as one segment), and mir_eval's "no boundary left after trimming"
    is silent. Set once around the whole run: ``warnings.catch_warnings`` inside the
    worker threads would undo each other's filters."""
    from msaf_learned_ssm.inference import ShortAudioWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", ShortAudioWarning)
        warnings.filterwarnings("ignore", module="mir_eval")
        yield


# ---- report -------------------------------------------------------------------------------

def mean_scores(rows: Sequence[dict]) -> dict:
    """(corpus, model, against, placement) -> {"HR0.5F", "HR3F", "ssm_r", "n"} (means)."""
    groups = defaultdict(list)
    for row in rows:
        groups[row["corpus"], row["model"], row["against"], row["placement"]].append(row)
    out = {}
    for key, group in groups.items():
        r = [g["ssm_r"] for g in group if np.isfinite(g["ssm_r"])]
        out[key] = {"HR0.5F": float(np.mean([g["HR0.5F"] for g in group])),
                    "HR3F": float(np.mean([g["HR3F"] for g in group])),
                    "ssm_r": float(np.mean(r)) if r else float("nan"), "n": len(group)}
    return out


def _cell(means: dict, key: tuple) -> str:
    m = means.get(key)
    return f"{m['HR0.5F']:.3f} / {m['HR3F']:.3f}" if m else "-"


def _model_column(cand: Candidate) -> str:
    p, a = cand.analyzer.peaks, cand.analyzer
    return (f"`{cand.label}` | {a.sync} | "
            f"{p.mean_half_sec:g} / {p.min_distance_sec:g} / {p.threshold:g}")


def reference_table(candidates: Sequence[Candidate], corpora: Sequence[str], means: dict
                    ) -> list[str]:
    """Markdown rows: HR0.5F / HR3F against the references, own and bar, per corpus."""
    head = "| model | own sync | own peaks | " + " | ".join(
        f"{c} own | {c} bar" for c in corpora) + " |"
    lines = [head, "|---|---|---|" + "---|---|" * len(corpora)]
    for cand in candidates:
        cells = [_cell(means, (c, cand.label, "reference", p)) for c in corpora
                 for p in PLACEMENTS]
        lines.append(f"| {_model_column(cand)} | " + " | ".join(cells) + " |")
    return lines


def _holds_teacher(candidate: Candidate, teacher_shas: set) -> bool:
    """Whether a candidate is a teacher, or an ensemble with a teacher among its members
    (its ``members`` records read ``"NAME sha256:HASH"``)."""
    own = {candidate.analyzer.identity["sha256"]}
    members = candidate.analyzer.meta.get("members") or []
    own |= {str(m).rpartition("sha256:")[2] for m in members}
    return bool(own & teacher_shas)


def teacher_table(candidates: Sequence[Candidate], corpora: Sequence[str], means: dict,
                  teachers: Teachers) -> list[str]:
    """Markdown rows: agreement with the teachers (hit rates both placements, SSM r)."""
    head = "| model | " + " | ".join(f"{c} own | {c} bar | {c} SSM r" for c in corpora) + " |"
    lines = [head, "|---|" + "---|---|---|" * len(corpora)]
    shas = {t.sha256 for t in teachers.models}
    for cand in candidates:
        cells = []
        for c in corpora:
            cells += [_cell(means, (c, cand.label, "teachers", p)) for p in PLACEMENTS]
            m = means.get((c, cand.label, "teachers", "own"))
            cells.append(f"{m['ssm_r']:.3f}" if m and np.isfinite(m["ssm_r"]) else "-")
        mark = " †" if _holds_teacher(cand, shas) else ""
        lines.append(f"| `{cand.label}`{mark} | " + " | ".join(cells) + " |")
    return lines


def track_counts(corpora: Sequence[Corpus], rows: Sequence[dict]) -> list[str]:
    """One line per corpus: tracks scored against references / teachers, of how many."""
    lines = []
    for corpus in corpora:
        done = {f"{a}s" if a == "reference" else a:
                {r["track"] for r in rows if r["corpus"] == corpus.name and r["against"] == a}
                for a in ("reference", "teachers")}
        listed = len(corpus.tracks) + len(corpus.missing)
        parts = [f"{len(v)} against the {a}" for a, v in done.items() if v]
        lines.append(f"- **{corpus.name}** (`{corpus.root}`"
                     + (f", ids `{corpus.ids}`" if corpus.ids else "") + f"): {listed} listed, "
                     f"{len(corpus.tracks)} with audio; scored: {', '.join(parts) or 'none'}")
    return lines


def timing_lines(clock: Stopwatch, wall: float, n_files: int, args: argparse.Namespace
                 ) -> list[str]:
    """Wall time and seconds per file, and the seconds per file of each stage."""
    import os

    per = f"{wall / n_files:.2f}" if n_files else "-"
    stages = ", ".join(f"{k} {v / max(n_files, 1):.2f}" for k, v in clock.seconds.items())
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return [f"Wall time {wall:.1f} s for {n_files} files: **{per} s per file** "
            f"(model loading included; device {args.device}, {args.jobs} files at a time, "
            f"{args.threads} torch thread(s) each; load average at the end {load}).",
            f"Seconds per file by stage, summed over the files in flight: {stages}."]


def tracker_description(s: Scoring) -> str:
    """Which tracker made the beats and bars of the report, with its version."""
    if getattr(s.tracker, "name", None) == "madmom":
        from msaf_learned_ssm.madmom_beats import madmom_version

        return (f"madmom {madmom_version()} (RNNDownBeatProcessor + DBN, 3/4 and 4/4, from "
                "the audio at 44.1 kHz" + (", cached" if s.beat_cache else "") + ")")
    return s.candidates[0].analyzer.beat_tracker_version("package")


def notes(teachers: Optional[Teachers], namespace: str, annotator,
          tracker: str = "") -> list[str]:
    from msaf_learned_ssm.sync import BAR_SNAP_BEATS

    lines = [
        "- Cells: trimmed HR0.5F / HR3F (mir_eval `segment.detection`, `trim=True`: the first "
        "and last boundaries are dropped; windows 0.5 s and 3 s), mean over tracks.",
        "- `own`: each model at its own settings (peak picking `own peaks` = local-mean half "
        "window s / minimum distance s / ratio threshold, and `own sync`, both read from the "
        "model file). `bar`: the same novelty peaks moved to the nearest estimated downbeat "
        f"(within {BAR_SNAP_BEATS:g} beat period, else the nearest beat; `sync=\"bar\"`). "
        "One forward per model and file serves both.",
        f"- References: namespace `{namespace}`, annotator "
        f"{annotator if annotator is not None else 'first'}.",
    ]
    if tracker:
        lines.append(f"- Beats and downbeats (`bar`, beat-grid models): {tracker}.")
    if teachers is not None:
        lines += [
            f"- Teachers ({' + '.join(teachers.names)}): boundaries are the peaks of the "
            "teachers' mean novelty with the author's settings (10 / 7 / 1.35); `own` scores "
            "each model's own placement against them, `bar` each model's bar placement "
            "against the teachers' boundaries moved to bar lines the same way. `SSM r`: "
            "Pearson correlation between the model's SSM and the teachers' mean SSM over "
            "the upper triangle (k=1), mean over tracks. A teacher that is also a candidate "
            "is not run again: the candidate's forward gives its SSM and novelty.",
            "- † the model is one of the teachers, or an ensemble holding one (an ensemble of "
            "all the teachers is their mean: 1.000 by construction): it is scored against a "
            "mean it is part of, "
            "so its agreement is not independent (inflated).",
        ]
    return lines


def render_report(command: str, corpora: Sequence[Corpus], s: Scoring, rows: Sequence[dict],
                  skipped: Sequence[str], timing: list[str]) -> str:
    """The markdown report (see the module docstring)."""
    means = mean_scores(rows)
    ref_corpora = [c.name for c in corpora
                   if any(r["corpus"] == c.name and r["against"] == "reference" for r in rows)]
    t_corpora = [c.name for c in corpora
                 if any(r["corpus"] == c.name and r["against"] == "teachers" for r in rows)]
    lines = ["# Candidate models", "", f"Command: `{command}`", "",
             f"Date: {datetime.now().isoformat(timespec='seconds')}", ""]
    if ref_corpora:
        lines += ["## Against the references", ""]
        lines += reference_table(s.candidates, ref_corpora, means) + [""]
    if t_corpora:
        lines += [f"## Agreement with the teachers ({' + '.join(s.teachers.names)})", ""]
        lines += teacher_table(s.candidates, t_corpora, means, s.teachers) + [""]
    if not (ref_corpora or t_corpora):
        lines += ["No track was scored.", ""]
    lines += ["## Tracks", ""] + track_counts(corpora, rows) + [""]
    if skipped:
        lines += [f"Skipped ({len(skipped)}):", ""] + [f"- {n}" for n in skipped] + [""]
    lines += ["## Timing", ""] + timing + ["", "## Notes", ""]
    lines += notes(s.teachers, s.namespace, s.annotator, tracker_description(s))
    return "\n".join(lines) + "\n"


def csv_text(rows: Sequence[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


# ---- command ------------------------------------------------------------------------------

def prepare(args: argparse.Namespace) -> tuple[list, Scoring]:
    """Corpora, models, teachers and tracker: every input checked before any long work.

    Raises
    ------
    LearnedSSMError
        A bad corpus, model, teacher, tracker or unwritable output (naming it).
    """
    from msaf_learned_ssm_jams.fileio import check_writable_dir

    for out in (args.out, args.csv):
        if out is not None:
            check_writable_dir(out.parent, "report")
    corpora = load_corpora(args.corpus)
    candidates = load_candidates(expand_models(args.models), args.device, args.tracker)
    teachers = load_teacher_set(args.teachers, corpora)
    configs = {}
    for config in [c.analyzer.config for c in candidates] + \
            ([teachers.config] if teachers else []):
        configs.setdefault(frontend_key(config), config)
    if args.tracker == "madmom":
        from msaf_learned_ssm.madmom_beats import shared_madmom_tracker

        tracker = shared_madmom_tracker()
    else:
        tracker = candidates[0].analyzer.tracker  # checks its front-end against the model's
    return corpora, Scoring(candidates, configs, tracker, teachers, args.teachers is not None,
                            args.namespace, args.annotator,
                            beat_cache=args.beat_cache if args.tracker == "madmom" else None)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command (see the module docstring); 0 on success, 2 on a bad input."""
    import torch

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    for option in ("threads", "jobs"):
        if getattr(args, option) < 1:
            print(f"error: --{option} must be >= 1, got {getattr(args, option)}",
                  file=sys.stderr)
            return 2
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return run(args, argv)
    finally:
        torch.set_num_threads(threads)  # a caller's setting (tests run main in-process)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Score, print and write the report (``main`` after the thread setting)."""
    from msaf_learned_ssm.errors import LearnedSSMError
    from msaf_learned_ssm.fileio import atomic_write_text

    started = time.perf_counter()
    try:
        corpora, scoring = prepare(args)
    except LearnedSSMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with scoring_warnings():
        rows, skipped, n_files = score_corpora(corpora, scoring, args.jobs)
    wall = time.perf_counter() - started
    command = "python bench/candidates.py " + shlex.join(argv)
    report = render_report(command, corpora, scoring, rows, skipped,
                           timing_lines(scoring.clock, wall, n_files, args))
    # The files first: a closed stdout (``| head``) must not lose a long run's results.
    atomic_write_text(args.out, report)
    if args.csv is not None:
        atomic_write_text(args.csv, csv_text(rows))
    print(report)
    print(f"wrote {args.out}" + (f" and {args.csv}" if args.csv is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
