"""The training loop: Adam on the joint loss, validation with mir_eval each epoch, early
stopping, atomic checkpoints and exact resumption.

Three files are written for ``out`` = ``MODEL.pt`` (for a name without ``.pt`` the suffixes are
appended to the whole name: ``model.v1`` -> ``model.v1.state.pt``, so runs never share them):

* ``MODEL.pt``: the best model so far (by the mean of validation HR0.5F and HR3F), a
  plain model file that the plugin and the CLI load;
* ``MODEL.state.pt``: everything needed to resume (:class:`TrainState`), written every
  ``checkpoint_every`` tracks and at the end of every epoch;
* ``MODEL.log.jsonl``: one JSON line per epoch (losses, validation scores, seconds).

Guarantees: a run never replaces another run's files unless asked (``resume`` continues
them, ``overwrite`` replaces them); a non-finite loss or gradient stops the run with
:class:`TrainingDivergedError` before anything non-finite is saved; the output folder is
checked for writability before any work.

A resumed run is the same run: one process at a time trains a run (a lock beside its
state, ``.MODEL.state.pt.lock``; a second training of it refuses, naming the first's
process id); the state records the run's ``out`` name (``x`` and ``x.pt``, whose state
file names coincide, never share one), and the training, validation and unlabelled
tracks with the content hashes of their audio and references (a changed corpus is refused
unless ``allow_corpus_change``); a resumed run whose best model file is missing is
refused rather than claimed.

Determinism: the order of the tracks, the random crops and the augmentation draws of an
epoch derive from ``(seed, epoch)``, and the torch RNG state (dropout) is saved in the resume
state, so a run killed at any point and resumed ends with the same weights as an
uninterrupted run.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import socket
import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, Union

import mir_eval
import numpy as np
import torch
from tqdm.auto import tqdm

from msaf_learned_ssm_jams.fileio import PathLike
from msaf_learned_ssm.checkpoint import (atomic_torch_save, checkpoint_dict, load_model,
                                         read_checkpoint)
from msaf_learned_ssm.beats import package_tracker_identity
from msaf_learned_ssm.config import ModelConfig, PeakConfig
from msaf_learned_ssm.errors import CheckpointError, ConfigError, LearnedSSMError, OutputError
from msaf_learned_ssm.fileio import atomic_write_text
from msaf_learned_ssm_jams.fileio import hidden_sibling
from msaf_learned_ssm.inference import resolve_device
from msaf_learned_ssm.model import EnsembleSSMNet, SSMNet, cosine_ssm
from msaf_learned_ssm.model_files import file_sha256, model_name, resolve_model
from msaf_learned_ssm.parallel import default_threads
from msaf_learned_ssm.peaks import novelty_to_boundaries
from msaf_learned_ssm_jams.fileio import check_writable_dir
from msaf_learned_ssm_jams.segments import check_reference_fits

from .augment import AugmentConfig, draw_augmentation
from .corpus import FeatureCache, Track, file_digest
from .distributed import (DistributedContext, barrier, broadcast_from_main, init_distributed,
                          shard, shutdown)
from .losses import joint_loss, novelty_bce, soft_bce, weighted_bce
from .targets import (ground_truth_novelty, ground_truth_ssm, patch_labels,
                      reference_boundaries)
from .teachers import TeacherCache, align_targets, load_teachers, teacher_records

#: 3: the state records the run's ``out`` name and its tracks (``corpus``); states of
#: versions 1 and 2 are still read (their tracks cannot be checked, with a warning).
STATE_VERSION = 3

#: Largest learning rate accepted: above it Adam's first step overflows float32.
MAX_LR = 1e9

__all__ = ["TrainConfig", "TrainResult", "TrainState", "TrainingDivergedError", "Example",
           "load_example", "training_step", "evaluate", "run_paths", "deterministic", "train",
           "check_model_path", "corpus_record", "corpus_changes", "run_lock", "MAX_LR"]


class TrainingDivergedError(LearnedSSMError):
    """The loss or a gradient became NaN or infinite (usually: learning rate too high)."""


@dataclass
class TrainConfig:
    """Settings of a training run (the model's own settings are in ModelConfig).

    Attributes
    ----------
    alpha : float
        Loss mix: ``alpha * SSM-loss + (1 - alpha) * novelty-loss``.
    novelty_balanced : bool
        Weight the novelty BCE's positives/negatives like the SSM-loss.
    lr : float
        Adam learning rate.
    epochs : int
        Maximum number of epochs.
    patience : int
        Stop after this many epochs without a better validation score.
    max_patches : int
        Longer tracks are randomly cropped to this many patches per step (memory).
    checkpoint_every : int
        Save the resume state every this many tracks (and at each epoch's end).
    seed : int
    namespace, annotator
        Which reference annotation to learn (see ``msaf_learned_ssm_jams.segments.read_segments``).
    peaks : dict
        Peak picking used for validation (:class:`~msaf_learned_ssm.config.PeakConfig`).
    augment : dict or None
        Waveform augmentation of the training tracks
        (:class:`~msaf_learned_ssm_training.augment.AugmentConfig` as a dict); None: off.
        Validation is never augmented.
    init : str or None
        The model file whose weights the run started from (name and SHA-256, for the
        record); None: trained from scratch.
    teachers : list of str or None
        The teacher models of the unlabelled tracks (``"NAME sha256:HASH"`` each, see
        :mod:`~msaf_learned_ssm_training.teachers`); None: no unlabelled tracks.
    teacher_weight : float
        Weight of an unlabelled track's loss (the joint loss, with ``alpha``, of the
        student's SSM and novelty against the teachers' mean, :func:`soft_bce`) against a
        labelled track's.
    unlabeled_share : float in [0, 1)
        Share of an epoch's steps spent on unlabelled tracks: each epoch adds
        ``round(share / (1 - share) * n_labelled)`` unlabelled tracks, drawn from the pool
        with the epoch's seed (without repetition while the pool lasts).
    """

    alpha: float = 0.5
    novelty_balanced: bool = False
    lr: float = 1e-4
    epochs: int = 30
    patience: int = 5
    max_patches: int = 600
    checkpoint_every: int = 50
    seed: int = 0
    namespace: Optional[str] = None
    annotator: Optional[Union[str, int]] = None
    peaks: dict = field(default_factory=lambda: PeakConfig().to_dict())
    augment: Optional[dict] = None
    init: Optional[str] = None
    teachers: Optional[list] = None
    teacher_weight: float = 1.0
    unlabeled_share: float = 0.5

    def __post_init__(self) -> None:
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr)
                and 0 < self.lr <= MAX_LR):
            raise ConfigError(f"lr must be a finite number in (0, {MAX_LR:g}], got {self.lr!r}")
        if not (isinstance(self.alpha, (int, float)) and 0.0 <= self.alpha <= 1.0):
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha!r}")
        for name in ("epochs", "patience", "max_patches", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if not (math.isfinite(self.teacher_weight) and self.teacher_weight >= 0):
            raise ConfigError(f"teacher_weight must be finite and >= 0, got "
                              f"{self.teacher_weight}")
        if not 0.0 <= self.unlabeled_share < 1.0:
            raise ConfigError(f"unlabeled_share must be in [0, 1), got {self.unlabeled_share}")


@dataclass
class Example:
    """One track ready for the model: patches, and either the ground truth (labelled) or
    the teachers' soft targets (unlabelled)."""

    track_id: str
    patches: np.ndarray      # (T, n_mels, patch_steps)
    patch_times: np.ndarray  # (T,)
    label_ids: Optional[np.ndarray]   # (T,); None for an unlabelled track
    boundaries: Optional[np.ndarray]  # reference boundary times (s); None if unlabelled
    duration: float
    soft_ssm: Optional[np.ndarray] = None      # (T, T) teachers' mean SSM
    soft_novelty: Optional[np.ndarray] = None  # (T,) teachers' mean novelty

    @property
    def labelled(self) -> bool:
        return self.soft_ssm is None


@dataclass
class TrainResult:
    """What a call of :func:`train` did.

    Attributes
    ----------
    history : list of dict
        Per-epoch records (losses, ``val_*`` scores, seconds), as in the log file.
    best : dict or None
        The record of the best epoch.
    epochs_run : int
        Epochs completed (in all calls of a resumed run).
    stopped : str
        ``"early"`` (patience), ``"epochs"`` (all done) or ``"steps"`` (``stop_after_steps``).
    skipped : dict
        Track id -> why it was left out.
    """

    history: list
    best: Optional[dict]
    epochs_run: int
    stopped: str
    skipped: dict


def run_paths(out: PathLike) -> tuple[Path, Path, Path]:
    """(best model, resume state, log) files of a run whose best model is ``out``.

    ``x`` and ``x.pt`` get the same state and log names; the state records which of them
    it belongs to, and :func:`train` refuses the other.
    """
    out = Path(check_model_path(out))
    stem = out.name[:-3] if out.name.endswith(".pt") else out.name
    return out, out.with_name(stem + ".state.pt"), out.with_name(stem + ".log.jsonl")


def check_model_path(out: PathLike) -> PathLike:
    """``out`` if it names a file (OutputError for an empty name, or one naming a folder
    such as ``runs/new/``: the model would be written as a file named ``runs/new``)."""
    text = os.fspath(out)
    if not text.strip():
        raise OutputError("the model file name (--out) is empty: give one, e.g. runs/model.pt")
    if text.endswith(("/", os.sep)) or Path(text).name in ("", ".", ".."):
        raise OutputError(f"{text}: --out names a folder; give the model file, e.g. "
                          f"{os.path.join(text, 'model.pt')}")
    return out


def _digest(path: Optional[Path]) -> Optional[str]:
    """Content hash of a file (None for no file, ``"unreadable"`` if it cannot be read:
    the track is then skipped with its reason, and a file that becomes readable counts as
    a change)."""
    if path is None:
        return None
    try:
        return file_digest(Path(path))
    except OSError:
        return "unreadable"


def corpus_record(train_tracks: Sequence[Track], val_tracks: Sequence[Track],
                  unlabeled_tracks: Sequence[Track] = ()) -> dict:
    """The tracks of a run, as its resume state records them.

    Returns
    -------
    dict
        ``"train"``, ``"validation"``, ``"unlabelled"``: lists of ``[track id, audio
        hash, reference hash]`` in the given order (hashes of the files' bytes,
        :func:`~msaf_learned_ssm_training.corpus.file_digest`; None for no reference).
    """
    def rows(tracks):
        return [[t.track_id, _digest(t.audio), _digest(t.reference)] for t in tracks]

    return {"train": rows(train_tracks), "validation": rows(val_tracks),
            "unlabelled": rows(unlabeled_tracks)}


def _few(ids: Sequence[str], n: int = 5) -> str:
    return ", ".join(ids[:n]) + (f", ... ({len(ids) - n} more)" if len(ids) > n else "")


def corpus_changes(saved: dict, current: dict) -> list[str]:
    """What differs between two :func:`corpus_record` (one phrase per part; [] if none)."""
    out = []
    for part in ("train", "validation", "unlabelled"):
        old = {row[0]: list(row[1:]) for row in saved.get(part, [])}
        new = {row[0]: list(row[1:]) for row in current.get(part, [])}
        bits = [f"{len(ids)} {word} ({_few(ids)})" for word, ids in (
            ("removed", [k for k in old if k not in new]),
            ("added", [k for k in new if k not in old]),
            ("changed", [k for k in new if k in old and old[k] != new[k]])) if ids]
        if not bits and list(old) != list(new):
            bits.append("the same tracks in another order")
        if bits:
            out.append(f"{part} tracks: {', '.join(bits)}")
    return out


def _reference(track: Track, config: TrainConfig) -> tuple[np.ndarray, list]:
    from msaf_learned_ssm_jams.segments import read_segments

    return read_segments(track.reference, namespace=config.namespace,
                         annotator=config.annotator)


def _check_fits(track: Track, intervals: np.ndarray, duration: float) -> None:
    """A reference must describe this audio: not run past it, nor state another duration
    (:func:`~msaf_learned_ssm_jams.segments.check_reference_fits`, shared with ``segment
    --reference``)."""
    check_reference_fits(track.reference, intervals, duration, track.audio)


def load_example(track: Track, cache: FeatureCache, config: TrainConfig,
                 augment: Optional[dict] = None, n_threads: Optional[int] = None) -> Example:
    """Patches and ground truth of one track (raises LearnedSSMError on bad input).

    With ``augment`` (drawn parameters), the waveform is augmented first and the reference's
    times are scaled with the tempo change. ``n_threads``: for decoding and the STFT (None:
    all cores).
    """
    intervals, labels = _reference(track, config)
    _check_fits(track, intervals, cache.steps(track.audio, n_threads=n_threads)[2])
    patches = cache.patches(track.audio, augment, n_threads)
    if augment is not None and augment.get("tempo") is not None:
        intervals = np.asarray(intervals, dtype=float) / float(augment["tempo"])
    # On a beat grid, the label changes at the patch nearest each boundary (patch_labels).
    lead = 0.5 * cache.config.grid_hop_sec(patches.times) if patches.grid == "beat" else 0.0
    return Example(track.track_id, patches.data, patches.times,
                   patch_labels(patches.times, intervals, labels, lead),
                   reference_boundaries(intervals), patches.duration)


def load_unlabeled_example(track: Track, cache: FeatureCache, teachers: TeacherCache,
                           augment: Optional[dict] = None,
                           n_threads: Optional[int] = None) -> Example:
    """Patches of an unlabelled track and the teachers' targets at their times.

    The teachers' targets come from the clean audio (:class:`TeacherCache`); with
    ``augment`` (drawn parameters) the patches are of the augmented waveform and the
    targets are moved to its times (a tempo change stretches them).
    """
    patches = cache.patches(track.audio, augment, n_threads)
    if len(patches.times) == 0:
        raise LearnedSSMError(f"{track.audio}: too short for one patch")
    targets = teachers.targets(track.audio, n_threads)
    scale = float(augment["tempo"]) if augment and augment.get("tempo") is not None else 1.0
    ssm, novelty = align_targets(targets, patches.times, scale)
    return Example(track.track_id, patches.data, patches.times, None, None, patches.duration,
                   ssm, novelty)


def _crop(n: int, max_patches: int, rng: np.random.Generator) -> slice:
    """A random window of ``max_patches`` of ``n`` patches (all of them if fewer)."""
    if n <= max_patches:
        return slice(0, n)
    start = int(rng.integers(0, n - max_patches + 1))
    return slice(start, start + max_patches)


def training_step(model: SSMNet, patches: torch.Tensor, label_ids: np.ndarray,
                  config: TrainConfig) -> dict[str, torch.Tensor]:
    """Losses of one track (no optimizer step). Tensors on the model's device."""
    device = patches.device
    gt_ssm = torch.from_numpy(ground_truth_ssm(label_ids)).to(device)
    gt_novelty = torch.from_numpy(ground_truth_novelty(label_ids)).to(device)
    embeddings, novelty = model(patches)
    ssm_loss = weighted_bce(cosine_ssm(embeddings), gt_ssm)
    nov_loss = novelty_bce(novelty, gt_novelty, balanced=config.novelty_balanced)
    return {"loss": joint_loss(ssm_loss, nov_loss, config.alpha), "ssm_loss": ssm_loss,
            "novelty_loss": nov_loss}


def teacher_step(model: SSMNet, patches: torch.Tensor, soft_ssm: torch.Tensor,
                 soft_novelty: torch.Tensor, config: TrainConfig) -> dict[str, torch.Tensor]:
    """Loss of one unlabelled track against the teachers' mean SSM and novelty (no
    optimizer step): ``teacher_weight`` times the joint loss of :func:`soft_bce`
    divergences, the SSM's class-balanced as the SSM-loss; 0 when the student's outputs
    equal the targets. Tensors on the model's device."""
    embeddings, novelty = model(patches)
    ssm_loss = soft_bce(cosine_ssm(embeddings), soft_ssm, balanced=True)
    nov_loss = soft_bce(novelty, soft_novelty, balanced=config.novelty_balanced)
    loss = config.teacher_weight * joint_loss(ssm_loss, nov_loss, config.alpha)
    return {"loss": loss, "teacher_loss": loss}


@torch.inference_mode()
def evaluate(model: SSMNet, examples: Sequence[Example], peaks: PeakConfig,
             device: torch.device) -> dict[str, float]:
    """Mean boundary hit rates (mir_eval, trimmed) of the model on ``examples``.

    Returns keys ``HR0.5F``, ``HR3F``, ``HR0.5P``... and ``score`` (mean of the two F).
    """
    model.eval()
    rows = []
    for ex in examples:
        if len(ex.patches) == 0:
            continue
        _, novelty = model(torch.from_numpy(ex.patches).to(device))
        _, est = novelty_to_boundaries(novelty.float().cpu().numpy(), ex.patch_times,
                                       ex.duration, model.config.grid_hop_sec(ex.patch_times),
                                       peaks)
        ref = ex.boundaries
        row = {}
        for window in (0.5, 3.0):
            with warnings.catch_warnings():
                # No inner boundary estimated (a model early in training): mir_eval scores
                # it 0, as it should, and warns each time; that warning only, for this call.
                warnings.filterwarnings("ignore", message="Estimated intervals are empty",
                                        category=UserWarning)
                p, r, f = mir_eval.segment.detection(
                    np.stack([ref[:-1], ref[1:]], 1), np.stack([est[:-1], est[1:]], 1),
                    window=window, trim=True)
            tag = f"HR{window:g}"
            row.update({f"{tag}P": p, f"{tag}R": r, f"{tag}F": f})
        rows.append(row)
    if not rows:
        return {"score": 0.0}
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    out["score"] = 0.5 * (out["HR0.5F"] + out["HR3F"])
    return out


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """Use PyTorch's deterministic kernels inside the block, then restore the caller's setting.

    Resumption must reproduce an uninterrupted run bit for bit, which needs e.g. the
    deterministic scatter-add in the backward of the novelty band's gathers.
    """
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


def _all_finite(tensors: Sequence[torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors if t is not None)


@dataclass
class TrainState:
    """Everything a run needs to continue: model, optimizer, position, history, RNG.

    ``save`` writes it atomically (and refuses non-finite weights); ``load`` restores it.
    """

    model: SSMNet
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    epoch: int = 0
    position: int = 0
    history: list = field(default_factory=list)
    best: Optional[dict] = None
    stale: int = 0
    running: dict = field(default_factory=lambda: _zero_running())
    corpus: Optional[dict] = None  # corpus_record of the run's tracks
    out: Optional[str] = None      # file name of the run's best model

    def save(self, path: Path) -> None:
        if not _all_finite(list(self.model.state_dict().values())):
            raise TrainingDivergedError(f"{path}: refusing to save non-finite weights")
        _save(path, {
            "state_version": STATE_VERSION, "model": checkpoint_dict(self.model),
            "optimizer": self.optimizer.state_dict(), "epoch": self.epoch,
            "position": self.position, "history": self.history, "best": self.best,
            "stale": self.stale, "running": self.running, "train_config": asdict(self.config),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "corpus": self.corpus, "out": self.out,
        })

    @staticmethod
    def read_configs(path: Path) -> tuple[dict, ModelConfig, TrainConfig]:
        """The raw state and its saved configurations (CheckpointError if unusable)."""
        if not path.is_file():
            raise CheckpointError(f"{path}: no resume state to continue from")
        data = read_checkpoint(path)
        if data.get("state_version", 0) > STATE_VERSION:
            raise CheckpointError(f"{path}: resume state version {data.get('state_version')} "
                                  "is newer than supported")
        try:
            return (data, ModelConfig.from_dict(data["model"]["config"]),
                    TrainConfig(**data["train_config"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a usable resume state "
                                  f"({type(exc).__name__}: {exc})") from exc

    def restore(self, data: dict, path: Path) -> None:
        try:
            self.model.load_state_dict(data["model"]["state_dict"])
            self.optimizer.load_state_dict(data["optimizer"])
            self.epoch, self.position = int(data["epoch"]), int(data["position"])
            self.history, self.best = list(data["history"]), data["best"]
            self.stale, self.running = int(data["stale"]), dict(data["running"])
            self.corpus, self.out = data.get("corpus"), data.get("out")
            torch.set_rng_state(data["torch_rng"])
            if data.get("cuda_rng") and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(data["cuda_rng"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            # A file that read_checkpoint accepted but is not a (complete) resume state.
            raise CheckpointError(f"{path}: not a usable resume state "
                                  f"({type(exc).__name__}: {exc})") from exc


def _save(path: Path, obj) -> None:
    """Write a model or state file atomically; OutputError naming the file and the cause
    (a full disk, say) if it cannot be written."""
    try:
        atomic_torch_save(obj, path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the file ({exc.strerror or exc})") from None


def _write_log(path: Path, history: list) -> None:
    try:
        atomic_write_text(path, "".join(json.dumps(h) + "\n" for h in history))
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the file ({exc.strerror or exc})") from None


def _state_owner(paths: Sequence[Path]) -> Optional[str]:
    """The best-model file name of the run whose state is ``paths[1]`` (None: no state, an
    unreadable one, or an older one of this very name)."""
    best, state, _ = paths
    if not state.is_file():
        return None
    try:
        owner = read_checkpoint(state).get("out")
    except CheckpointError:
        return None  # reported when resuming; replaced by --overwrite
    if owner is None:  # an older state: the run of the other name, if only its model exists
        other = best.name[:-3] if best.name.endswith(".pt") else best.name + ".pt"
        if (best.parent / other).is_file() and not best.is_file():
            return other
    return owner


def _refuse_other_run(paths: Sequence[Path]) -> None:
    """``x`` and ``x.pt`` share the state and log names: never let one take the other's."""
    owner = _state_owner(paths)
    if owner is not None and owner != paths[0].name:
        raise OutputError(f"{paths[1]} is the state of the run {paths[0].with_name(owner)}, "
                          f"not of {paths[0]} (their state and log files have the same "
                          "names): give another --out")


def _lock_holder(owner_file: Path) -> str:
    try:
        pid, _, host = owner_file.read_text(encoding="utf-8").strip().partition(" ")
        return f"process {pid}" + (f" on {host}" if host and host != socket.gethostname()
                                   else "")
    except OSError:
        return "process id not yet written"


@contextlib.contextmanager
def run_lock(paths: Sequence[Path], ctx: Optional[DistributedContext] = None
             ) -> Iterator[None]:
    """Hold the run's lock while it trains (rank 0 of a distributed run holds it for all).

    The lock is the hidden file ``.MODEL.state.pt.lock`` beside the state (kept: removing
    it could race with another process taking it); the holder's process id is written
    beside it (``.MODEL.state.pt.lock.pid``, removed at the end).

    Raises
    ------
    OutputError
        Another process trains this run (one line naming its process id).
    """
    from filelock import FileLock, Timeout

    main = ctx is None or ctx.is_main
    lock = FileLock(str(hidden_sibling(paths[1], ".lock")), timeout=0)
    owner_file = hidden_sibling(paths[1], ".lock.pid")
    problem = None
    if main:
        try:
            lock.acquire()
        except Timeout:
            problem = (f"{paths[0]}: another training of this run is in progress "
                       f"({_lock_holder(owner_file)}): wait for it to end, or give another "
                       "--out")
        else:
            atomic_write_text(owner_file, f"{os.getpid()} {socket.gethostname()}\n")
    problem = broadcast_from_main(problem, ctx)
    if problem is not None:
        raise OutputError(problem)
    try:
        yield
    finally:
        if main:
            owner_file.unlink(missing_ok=True)
            lock.release()


def _zero_running() -> dict:
    """Sums of the epoch's losses: labelled steps (``n``), unlabelled ones (``n_teacher``)."""
    return {"loss": 0.0, "ssm_loss": 0.0, "novelty_loss": 0.0, "n": 0,
            "teacher_loss": 0.0, "n_teacher": 0}


def _refuse_existing(paths: Sequence[Path], resume: bool, overwrite: bool) -> None:
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other")
    if resume or overwrite:
        return
    existing = [p for p in paths if p.exists()]
    if existing:
        raise OutputError(f"{existing[0]} exists (an earlier run): pass --resume to continue "
                          "it or --overwrite to replace it")


def _load_examples(tracks: Sequence[Track], cache: FeatureCache, config: TrainConfig,
                   what: str, skipped: dict, progress: bool) -> list[Example]:
    examples = []
    for track in tqdm(tracks, desc=f"features ({what})", disable=not progress, leave=False):
        try:
            examples.append(load_example(track, cache, config))
        except LearnedSSMError as exc:
            skipped[track.track_id] = str(exc)
    return examples


def _epoch_example(base: Example, track: Track, cache: FeatureCache, config: TrainConfig,
                   epoch: int, n_threads: Optional[int] = None,
                   teachers: Optional[TeacherCache] = None) -> Example:
    """The example a training step sees: ``base``, or this epoch's augmented draw of it
    (labelled or unlabelled alike)."""
    if config.augment is None:
        return base
    augment = AugmentConfig(**config.augment)
    params = draw_augmentation(augment, config.seed, track.track_id, epoch % augment.variants)
    if base.labelled:
        return load_example(track, cache, config, params, n_threads)
    return load_unlabeled_example(track, cache, teachers, params, n_threads)


def unlabeled_steps(n_labelled: int, share: float) -> int:
    """Unlabelled tracks an epoch adds to ``n_labelled`` labelled ones, so that they make
    ``share`` of its steps."""
    return int(round(share / (1.0 - share) * n_labelled))


def epoch_order(config: TrainConfig, epoch: int, n_labelled: int, n_unlabeled: int
                ) -> np.ndarray:
    """Indices of an epoch's steps, in order: labelled examples are ``0..n_labelled-1``,
    unlabelled ones ``n_labelled + j``; from ``(seed, epoch)`` only.

    Without unlabelled tracks this is the permutation runs have always used. With them, the
    epoch takes :func:`unlabeled_steps` unlabelled tracks, each at most once while the pool
    lasts, and shuffles them among the labelled ones.
    """
    rng = np.random.default_rng([config.seed, epoch])
    if n_unlabeled == 0:
        return rng.permutation(n_labelled)
    k = unlabeled_steps(n_labelled, config.unlabeled_share)
    pick = np.random.default_rng([config.seed, epoch, 1])
    rounds = [pick.permutation(n_unlabeled) for _ in range(-(-k // n_unlabeled))]
    chosen = np.concatenate(rounds)[:k] if rounds else np.zeros(0, dtype=int)
    return rng.permutation(np.concatenate([np.arange(n_labelled), n_labelled + chosen]))


def default_data_threads(device: torch.device, world_size: int = 1) -> int:
    """Threads that prepare upcoming tracks (augmented draws) beside the training steps.

    With a GPU, this rank's share of the cores less one (the steps leave the CPU idle, and
    an augmented draw costs far more than a step: ``bench/results/speed_gpu.md``); on a
    CPU, the cores that torch's own threads leave free.
    """
    share = default_threads() // max(world_size, 1)
    if device.type != "cpu":
        return max(1, share - 1)
    return max(0, share - torch.get_num_threads())


def _ahead(items: Sequence, make: Callable, workers: int) -> Iterator:
    """``make(item)`` for each item, in order; with ``workers`` > 0 computed up to
    ``2 * workers`` items ahead in threads (one thread of CPU work each).

    The order of the results does not depend on the threads' timing: an example depends
    only on its track, the seed and the epoch. Closing the iterator early cancels what has
    not started.
    """
    if workers < 1:
        for item in items:
            yield make(item)
        return
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        queue: deque = deque()
        rest = iter(items)
        for item in itertools.islice(rest, 2 * workers):
            queue.append(pool.submit(make, item))
        while queue:
            result = queue.popleft().result()
            for item in itertools.islice(rest, 1):
                queue.append(pool.submit(make, item))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _step(state: TrainState, example: Example, rng: np.random.Generator,
          dev: torch.device, stepper: Optional[torch.nn.Module] = None) -> None:
    """One optimisation step on one track; TrainingDivergedError before a non-finite update.

    ``stepper``: the module that runs the forward pass (the DDP wrapper of ``state.model``
    in a distributed run, whose backward pass averages the gradients across ranks).
    """
    window = _crop(len(example.patches), state.config.max_patches, rng)
    patches = torch.from_numpy(example.patches[window]).to(dev)
    if example.labelled:
        losses = training_step(stepper or state.model, patches, example.label_ids[window],
                               state.config)
    else:
        losses = teacher_step(stepper or state.model, patches,
                              torch.from_numpy(example.soft_ssm[window, window]).to(dev),
                              torch.from_numpy(example.soft_novelty[window]).to(dev),
                              state.config)
    where = f"epoch {state.epoch + 1}, track {example.track_id}"
    state.optimizer.zero_grad(set_to_none=True)
    # Backward before the loss check: in a distributed run every rank must join the
    # gradient all-reduce; a non-finite loss on one rank then makes every rank's averaged
    # gradient non-finite, so all of them stop below, none hangs.
    losses["loss"].backward()
    if not torch.isfinite(losses["loss"]):
        raise TrainingDivergedError(f"the loss became {float(losses['loss'].detach())} at {where}: "
                                    f"lower the learning rate (--lr, now {state.config.lr:g})")
    if not _all_finite([p.grad for p in state.model.parameters()]):
        raise TrainingDivergedError(f"a gradient became non-finite at {where}: lower the "
                                    f"learning rate (--lr, now {state.config.lr:g})")
    state.optimizer.step()
    if not _all_finite(list(state.model.parameters())):
        raise TrainingDivergedError(f"the weights became non-finite at {where}: lower the "
                                    f"learning rate (--lr, now {state.config.lr:g})")
    running = state.running
    if example.labelled:
        for key in ("loss", "ssm_loss", "novelty_loss"):
            running[key] += float(losses[key].detach())
        running["n"] += 1
    else:  # a resume state of an older version has no teacher sums
        running["teacher_loss"] = running.get("teacher_loss", 0.0) \
            + float(losses["teacher_loss"].detach())
        running["n_teacher"] = running.get("n_teacher", 0) + 1


def train(train_tracks: Sequence[Track], val_tracks: Sequence[Track], out: PathLike,
          model_config: ModelConfig = ModelConfig(), config: TrainConfig = TrainConfig(),
          cache_dir: Optional[PathLike] = None, device: str = "auto", resume: bool = False,
          progress: bool = True, stop_after_steps: Optional[int] = None,
          on_event: Optional[Callable[[str, dict], None]] = None, *,
          overwrite: bool = False, epochs: Optional[int] = None,
          data_threads: Optional[int] = None,
          init: Optional[PathLike] = None,
          unlabeled_tracks: Sequence[Track] = (),
          teachers: Sequence[PathLike] = (),
          allow_corpus_change: bool = False) -> TrainResult:
    """Train SSM-Net; see the module docstring for the files written.

    Parameters
    ----------
    train_tracks, val_tracks : sequences of Track
    out : path
        The best model's file (``.pt``).
    model_config, config : ModelConfig, TrainConfig
        Ignored when resuming: the saved ones are used (but see ``epochs``).
    cache_dir : path, optional
        Feature cache folder.
    device : str
        ``auto``, ``cpu``, ``cuda``...
    resume : bool
        Continue from ``out``'s resume state (CheckpointError if there is none, if it is
        the state of another ``out`` name, if the run's best model file is missing, or if
        the tracks differ from the run's; see ``allow_corpus_change``).
    progress : bool
        Show tqdm bars.
    stop_after_steps : int, optional
        Stop (after saving the resume state) once this many optimisation steps were done in
        this call; for tests of resumption.
    on_event : callable, optional
        Called as ``on_event("epoch", record)`` after each epoch.
    overwrite : bool
        Replace the files of an earlier run at ``out`` (without it, and without ``resume``,
        existing files are an :class:`OutputError`).
    epochs : int, optional
        With ``resume``: train until this many epochs in all (a finished run can be
        extended); default the saved run's.
    data_threads : int >= 0, optional
        Threads that prepare the next tracks' augmented draws while the model trains
        (0: in turn with the steps); default :func:`default_data_threads`. Runs with
        threads are reproducible and resume exactly, as runs without; the two can end a
        little apart, since OpenBLAS's products differ in the last bits between the main
        thread and other threads.
    init : path or model name, optional
        Start from this model's weights and architecture (fine-tuning; of ``model_config``
        only ``patch_grid`` is then used) instead of a random initialisation; not with
        ``resume``.
    unlabeled_tracks : sequence of Track
        Tracks without reference (``reference=None``), trained against the ``teachers``'
        mean SSM and novelty (:func:`teacher_step`); ``config.unlabeled_share`` of each
        epoch's steps, ``config.teacher_weight`` their loss's weight.
    teachers : sequence of model names or files
        The teacher models (needed with ``unlabeled_tracks``, and only then). A resumed run
        needs the same teachers as it started with (by file hash).
    allow_corpus_change : bool
        With ``resume``: continue although the training, validation or unlabelled tracks
        (ids, audio or reference contents) differ from those the run started with (a
        warning says what changed; the best epoch is then chosen across different
        validation sets). Without it that is a CheckpointError.

    Returns
    -------
    TrainResult

    Raises
    ------
    OutputError
        Earlier run's files exist (neither ``resume`` nor ``overwrite``), they are another
        ``out`` name's, another process trains this run, ``out`` is empty or a folder, or
        the output folder (or a file written during training) is not writable.
    LearnedSSMError
        No training track given, or none usable, or validation tracks given but none
        usable (the reasons of the first ones), before the first epoch.
    TrainingDivergedError
        Non-finite loss, gradient or weights; nothing non-finite is saved.
    CheckpointError
        A missing or unusable resume state.

    Notes
    -----
    Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the run is data-parallel
    over the ranks; see :mod:`msaf_learned_ssm_training.distributed`.
    """
    paths = run_paths(out)  # OutputError for an empty name or a folder
    if not train_tracks:
        raise LearnedSSMError("no training tracks given")
    if data_threads is not None and (not isinstance(data_threads, int) or data_threads < 0):
        raise ConfigError(f"data_threads must be an integer >= 0, got {data_threads!r}")
    if bool(unlabeled_tracks) != bool(teachers):
        raise ConfigError("unlabelled tracks and teachers go together: give both or neither")
    teacher_models = load_teachers(teachers) if teachers else []
    if teacher_models and not resume:
        config = replace(config, teachers=teacher_records(teacher_models))
    init_weights = None
    if init is not None:
        if resume:
            raise ConfigError("init and resume exclude each other: a resumed run continues "
                              "from its own saved weights")
        grid = model_config.patch_grid
        model_config, config, init_weights = _initial_weights(init, config)
        # Where patches are centred is an input setting, not part of the architecture:
        # a frame-grid model can be fine-tuned on the beat grid.
        model_config = model_config.replace(patch_grid=grid)
    ctx, dev = init_distributed(resolve_device(device))
    if data_threads is None:
        data_threads = default_data_threads(dev, ctx.world_size if ctx else 1)
    try:
        check_writable_dir(paths[0].parent, "model")
        with run_lock(paths, ctx):
            _refuse_other_run(paths)
            _refuse_existing(paths, resume, overwrite)
            barrier(ctx)  # every rank has looked before rank 0 writes anything
            with deterministic():
                return _run(train_tracks, val_tracks, paths, model_config, config, cache_dir,
                            dev, resume, progress and (ctx is None or ctx.is_main),
                            stop_after_steps, on_event, epochs, ctx, data_threads,
                            init_weights, list(unlabeled_tracks), teacher_models,
                            allow_corpus_change)
    finally:
        shutdown(ctx)


def _initial_weights(init: PathLike, config: TrainConfig
                     ) -> tuple[ModelConfig, TrainConfig, dict]:
    """Architecture, config (recording the source) and weights of a fine-tuning run."""
    path = resolve_model(init)
    model, _ = load_model(path)  # CheckpointError naming the file if unusable
    if isinstance(model, EnsembleSSMNet):
        raise ConfigError(f"{path}: an ensemble of several models; --init takes one model "
                          "(one of its members)")
    name = model_name(path)
    if name.startswith("author-"):
        warnings.warn(f"starting from {name}, the author's weights (LGPL-3.0, "
                      "msaf_learned_ssm/models/LICENSE.author-models): the trained model "
                      "derives from them")
    return (model.config, replace(config, init=f"{name} sha256:{file_sha256(path)}"),
            model.state_dict())


def _start(paths: tuple, model_config: ModelConfig, config: TrainConfig, dev: torch.device,
           resume: bool, epochs: Optional[int], init_weights: Optional[dict] = None
           ) -> TrainState:
    data = None
    if resume:
        data, model_config, config = TrainState.read_configs(paths[1])
        best = data.get("best")
        if best is not None and not paths[0].is_file():
            raise CheckpointError(f"{paths[0]}: the run's best model (epoch "
                                  f"{best.get('epoch', '?')}) is missing: put it back to "
                                  "resume, or start again with --overwrite")
        if epochs is not None:
            config = replace(config, epochs=int(epochs))
    torch.manual_seed(config.seed)
    model = SSMNet(model_config).to(dev)
    if init_weights is not None:
        model.load_state_dict(init_weights)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    state = TrainState(model, optimizer, config)
    if data is not None:
        state.restore(data, paths[1])
    return state


def _check_corpus(state: TrainState, corpus: dict, path: Path, allow: bool) -> None:
    """A resumed run needs the tracks it started with (CheckpointError otherwise, unless
    ``allow``: then a warning); the state then records ``corpus``."""
    if state.corpus is None:
        warnings.warn(f"{path}: this resume state predates track records, so whether the "
                      "tracks changed cannot be checked; they are recorded from now on")
    else:
        changes = corpus_changes(state.corpus, corpus)
        if changes and not allow:
            raise CheckpointError(f"{path}: the tracks differ from those the run started "
                                  f"with ({'; '.join(changes)}): resume with the same corpus "
                                  "and split, or pass --allow-corpus-change")
        if changes:
            warnings.warn(f"{path}: continuing with other tracks than the run started with "
                          f"({'; '.join(changes)}; --allow-corpus-change): earlier epochs "
                          "were validated on other tracks")
    state.corpus = corpus


def _same_run(state: TrainState, paths: Sequence[Path], resume: bool, corpus: dict,
              teachers: Sequence, allow_corpus_change: bool) -> None:
    """A resumed run continues with its own tracks and teachers (CheckpointError
    otherwise); the state records its tracks and its ``out`` name."""
    if resume:
        _check_corpus(state, corpus, paths[1], allow_corpus_change)
        _check_teachers(state.config, teachers, paths[1])
    state.corpus, state.out = corpus, paths[0].name


def _check_teachers(config: TrainConfig, teachers: Sequence, path: Path) -> None:
    """A resumed run needs the teachers it started with (CheckpointError otherwise)."""
    saved = sorted(config.teachers or [])
    given = sorted(teacher_records(teachers))
    if [r.split("sha256:")[-1] for r in saved] != [r.split("sha256:")[-1] for r in given]:
        raise CheckpointError(f"{path}: the run was trained with teachers "
                              f"{', '.join(saved) or '(none)'}, but this call gives "
                              f"{', '.join(given) or '(none)'}: resume with the same "
                              "--teacher and --unlabeled")


def _run(train_tracks, val_tracks, paths, model_config, config, cache_dir, dev, resume,
         progress, stop_after_steps, on_event, epochs,
         ctx: Optional[DistributedContext] = None, data_threads: int = 0,
         init_weights: Optional[dict] = None, unlabeled_tracks: Sequence[Track] = (),
         teachers: Sequence = (), allow_corpus_change: bool = False) -> TrainResult:
    best_path, state_path, log_path = paths
    main = ctx is None or ctx.is_main
    world, rank = (ctx.world_size, ctx.rank) if ctx else (1, 0)
    state = _start(paths, model_config, config, dev, resume, epochs, init_weights)
    config = state.config
    _same_run(state, paths, resume, corpus_record(train_tracks, val_tracks, unlabeled_tracks),
              teachers, allow_corpus_change)
    teacher_cache = TeacherCache(cache_dir, teachers) if teachers else None
    stepper = None
    if ctx is not None:
        from torch.nn.parallel import DistributedDataParallel

        stepper = DistributedDataParallel(
            state.model, device_ids=[dev.index] if dev.type == "cuda" else None)
    cache = FeatureCache(cache_dir, state.model.config)
    train_examples, val_examples, skipped = _load_data(train_tracks, val_tracks, cache, config,
                                                       progress, ctx)
    unlabeled = _load_unlabeled(unlabeled_tracks, cache, teacher_cache, skipped, progress,
                                ctx)
    n_labelled = len(train_examples)
    sources = [{t.track_id: t for t in train_tracks}, {t.track_id: t for t in unlabeled_tracks}]
    train_examples = train_examples + unlabeled
    peaks = PeakConfig(**config.peaks)
    steps_done = 0
    while state.epoch < config.epochs:
        started = time.perf_counter()
        order = epoch_order(config, state.epoch, n_labelled, len(unlabeled))
        # ``position`` counts steps; one step trains on one track per rank.
        mine = shard(order, rank, world) if ctx is not None else order
        state.model.train()
        upcoming = _upcoming(mine[state.position:], train_examples, sources, cache,
                             config, state.epoch, data_threads, teacher_cache)
        # The bar is closed (and its line cleared) however the epoch ends, so that an
        # error message starts on a line of its own.
        with tqdm(total=len(mine), initial=state.position, disable=not progress, leave=False,
                  desc=f"epoch {state.epoch + 1}/{config.epochs}") as bar, \
                contextlib.closing(upcoming):
            for example in upcoming:
                crop_rng = np.random.default_rng([config.seed, state.epoch,
                                                  state.position * world + rank])
                _step(state, example, crop_rng, dev, stepper)
                state.position += 1
                steps_done += 1
                bar.update(1)
                bar.set_postfix(loss=f"{state.running['loss'] / max(state.running['n'], 1):.4f}")
                if (main and state.position % config.checkpoint_every == 0
                        and state.position < len(mine)):
                    state.save(state_path)
                if stop_after_steps is not None and steps_done >= stop_after_steps:
                    if main:
                        state.save(state_path)
                    return TrainResult(state.history, state.best, state.epoch, "steps",
                                       skipped)
        record = _end_epoch(state, val_examples, peaks, dev, started, best_path, ctx)
        if main:
            state.save(state_path)
            _write_log(log_path, state.history)
        if on_event is not None:
            on_event("epoch", record)
        if progress:
            tqdm.write(f"epoch {record['epoch']}: loss {record['loss']:.4f} val HR0.5F "
                       f"{record.get('val_HR0.5F', float('nan')):.3f} HR3F "
                       f"{record.get('val_HR3F', float('nan')):.3f}"
                       + (" *" if state.stale == 0 else ""))
        if state.stale >= config.patience:
            return TrainResult(state.history, state.best, state.epoch, "early", skipped)
    return TrainResult(state.history, state.best, state.epoch, "epochs", skipped)


def _load_data(train_tracks: Sequence[Track], val_tracks: Sequence[Track],
               cache: FeatureCache, config: TrainConfig, progress: bool,
               ctx: Optional[DistributedContext]) -> tuple[list, list, dict]:
    """Examples of the training tracks (every rank) and of the validation tracks (rank 0
    alone validates, and broadcasts the scores), and the reasons of the skipped tracks.

    Validation tracks given but none usable is a LearnedSSMError, raised before the
    training tracks are loaded (no run selects its best epoch on no validation)."""
    main = ctx is None or ctx.is_main
    skipped: dict[str, str] = {}
    # Validation first: tracks given for it but none usable fail before the long part.
    val_examples = (_load_examples(val_tracks, cache, config, "validation", skipped, progress)
                    if main else [])
    problem = None
    if main and val_tracks and not val_examples:
        problem = "no usable validation track: " + "; ".join(
            f"{t.track_id}: {skipped[t.track_id]}" for t in val_tracks[:5])
    problem = broadcast_from_main(problem, ctx)
    if problem is not None:
        raise LearnedSSMError(problem)
    if not main:
        barrier(ctx)  # rank 0 fills the feature cache first; the others then read it
    train_examples = _load_examples(train_tracks, cache, config, "train", skipped, progress)
    if main:
        barrier(ctx)
    if not train_examples:
        raise LearnedSSMError("no usable training track: " + "; ".join(
            f"{k}: {v}" for k, v in list(skipped.items())[:5]))
    return train_examples, val_examples, skipped


def _load_unlabeled(tracks: Sequence[Track], cache: FeatureCache,
                    teachers: Optional[TeacherCache], skipped: dict, progress: bool,
                    ctx: Optional[DistributedContext]) -> list[Example]:
    """Examples of the unlabelled tracks with the teachers' targets (rank 0 fills both
    caches first, the other ranks then read them); a bad track is skipped with its reason."""
    if not tracks:
        return []
    main = ctx is None or ctx.is_main
    if not main:
        barrier(ctx)
    examples = []
    for track in tqdm(tracks, desc="features and teachers (unlabelled)", disable=not progress,
                      leave=False):
        try:
            examples.append(load_unlabeled_example(track, cache, teachers))
        except LearnedSSMError as exc:
            skipped[f"unlabelled {track.track_id}"] = str(exc)
    if main:
        barrier(ctx)
    if not examples:
        raise LearnedSSMError("no usable unlabelled track: " + "; ".join(
            f"{k}: {v}" for k, v in list(skipped.items())[:5]))
    return examples


def _upcoming(indices: Sequence[int], train_examples: Sequence[Example],
              sources: Sequence[dict], cache: FeatureCache, config: TrainConfig, epoch: int,
              data_threads: int, teachers: Optional[TeacherCache] = None
              ) -> Iterator[Example]:
    """The examples of ``indices`` as this epoch's steps see them; augmented draws are
    prepared ``data_threads`` at a time ahead of the steps (one CPU thread each).
    ``sources``: track id -> Track of the labelled and of the unlabelled tracks."""
    def prepare(index: int) -> Example:
        base = train_examples[index]
        track = sources[0 if base.labelled else 1][base.track_id]
        return _epoch_example(base, track, cache, config, epoch,
                              1 if data_threads > 0 else None, teachers)

    return _ahead(indices, prepare, data_threads if config.augment is not None else 0)


def _end_epoch(state: TrainState, val_examples: Sequence[Example], peaks: PeakConfig,
               dev: torch.device, started: float, best_path: Path,
               ctx: Optional[DistributedContext] = None) -> dict:
    """Validate, record the epoch, save the model if it is the best; returns the record.

    In a distributed run rank 0 validates and every rank gets its scores, so that all of
    them keep the same history and stop together; only rank 0 writes.
    """
    main = ctx is None or ctx.is_main
    scores = (evaluate(state.model, val_examples, peaks, dev) if main and val_examples
              else {"score": 0.0})
    scores = broadcast_from_main(scores, ctx)
    running = state.running
    teacher = ({"teacher_loss": running["teacher_loss"] / running["n_teacher"]}
               if running.get("n_teacher") else {})
    record = {"epoch": state.epoch + 1,
              **{k: running[k] / max(running["n"], 1)
                 for k in ("loss", "ssm_loss", "novelty_loss")}, **teacher,
              **{f"val_{k}": v for k, v in scores.items()},
              "seconds": time.perf_counter() - started}
    state.history.append(record)
    if state.best is None or scores["score"] > state.best["val_score"] + 1e-9:
        state.best, state.stale = dict(record), 0
        if main:
            # A beat-grid model learned on the package tracker's beats: the file says
            # which tracker (and which version of it) cut its patches.
            tracker = ({"beat_tracker": package_tracker_identity()}
                       if state.model.config.patch_grid == "beat" else {})
            _save(best_path, checkpoint_dict(state.model, epoch=state.epoch + 1,
                                             metrics=record, train_config=asdict(state.config),
                                             **tracker))
    else:
        state.stale += 1
    state.epoch, state.position, state.running = state.epoch + 1, 0, _zero_running()
    return record
