"""Training the beat and downbeat tracker (:class:`~msaf_learned_ssm.beats.BeatTCN`).

Targets come from the ``beat`` annotations of the corpus references (value = position in
the bar, 1 = downbeat; ``build-pop909`` writes them from ``beat_midi.txt``). Each frame
nearest a beat is 1 and its two neighbours 0.5 (target widening, as in Boeck et al.'s
TCN trackers), for the beat row and, at position 1, for the downbeat row. Training sees
random crops of ``crop_frames`` frames of the clean audio and of ``augment_variants``
waveform-augmented versions (tempo changes scale the beat times). Model selection: mean of
beat and downbeat F-measure (``mir_eval.beat.f_measure``, 70 ms window) on the
validation tracks. Runs resume at epoch boundaries (``--resume``) and end identical to an
uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from msaf_learned_ssm.beats import (BeatConfig, BeatTCN, decode_beats, load_beat_model,
                                    save_beat_model, tracker_frames)
from msaf_learned_ssm.checkpoint import atomic_torch_save, read_checkpoint
from msaf_learned_ssm.errors import LearnedSSMError
from msaf_learned_ssm.features import log_mel, standardize_bands
from msaf_learned_ssm_jams.errors import AnnotationError
from msaf_learned_ssm_jams.fileio import PathLike

from .augment import AugmentConfig, draw_augmentation
from .corpus import FeatureCache, Track
from .trainer import TrainingDivergedError, _refuse_existing, deterministic, run_paths


@dataclass(frozen=True)
class BeatTrainConfig:
    """Settings of a tracker training run.

    Attributes
    ----------
    epochs : int
        Upper bound on epochs (one crop of every track and variant per epoch).
    patience : int
        Stop after this many epochs without a better validation score.
    lr : float
        Adam learning rate.
    batch_size : int
        Crops per step.
    crop_frames : int
        Frames per crop (1500 frames of 46 ms: about 70 s).
    augment_variants : int
        Augmented versions of every training track besides the clean one (0: none).
    augment : {"light", "heavy"}
        ``AugmentConfig()`` (gain, EQ, low-pass, noise, pitch, tempo +-8 %, MP3) or
        ``AugmentConfig.heavy()`` (also tempo +-25 %, drums down or gone, reverb,
        compression, lo-fi). With "heavy", validation also scores one heavy draw of each
        validation track, so that selection sees robustness and not only clean renders.
    init : str, optional
        Tracker file to start from (its architecture and weights); None: from scratch.
    seed : int
    """

    epochs: int = 40
    patience: int = 6
    lr: float = 1e-3
    batch_size: int = 8
    crop_frames: int = 1500
    augment_variants: int = 1
    augment: str = "light"
    init: Optional[str] = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "patience", "batch_size", "crop_frames"):
            if int(getattr(self, name)) < 1:
                raise LearnedSSMError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.augment_variants < 0:
            raise LearnedSSMError(f"augment_variants must be >= 0, got {self.augment_variants}")
        if not 0 < self.lr < 1:
            raise LearnedSSMError(f"lr must be in (0, 1), got {self.lr}")
        if self.augment not in AUGMENT_LEVELS:
            raise LearnedSSMError(f"augment must be one of {', '.join(AUGMENT_LEVELS)}, "
                                  f"got {self.augment!r}")

    def augment_config(self) -> AugmentConfig:
        """The augmentation the training tracks' variants are drawn from."""
        if self.augment == "heavy":
            return AugmentConfig.heavy(variants=max(1, self.augment_variants))
        return AugmentConfig()


#: Augmentation levels of :class:`BeatTrainConfig`.
AUGMENT_LEVELS = ("light", "heavy")
#: Seed offset of the validation tracks' heavy draws (never a training draw's seed).
VAL_DRAW_SEED_OFFSET = 1_000_003


class TrackerFrameCache(FeatureCache):
    """Cache of the tracker's input frames per audio file (and augmentation)."""

    def __init__(self, cache_dir: Optional[PathLike], config: BeatConfig) -> None:
        self.beat_config = config
        super().__init__(cache_dir, config.model_config)

    def _key_settings(self) -> dict:
        return {**super()._key_settings(), "tracker_frames": self.beat_config.frames_per_frame}

    def _compute(self, y: np.ndarray, n_threads: Optional[int] = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        mel = standardize_bands(log_mel(y, self.config, n_threads))
        return tracker_frames(mel, self.beat_config.frames_per_frame, self.config.frame_sec)


def beat_targets(beat_times: np.ndarray, positions: np.ndarray, frame_times: np.ndarray
                 ) -> np.ndarray:
    """Frame targets of the beat and downbeat rows.

    Parameters
    ----------
    beat_times : np.ndarray, shape (n_beats,)
        Seconds.
    positions : np.ndarray of int, shape (n_beats,)
        Position in the bar (1 = downbeat).
    frame_times : np.ndarray, shape (F,)
        Evenly spaced frame times (s).

    Returns
    -------
    np.ndarray, shape (2, F), float32
        1 at the frame nearest each beat, 0.5 at its neighbours (when not themselves 1).
    """
    n = len(frame_times)
    targets = np.zeros((2, n), dtype=np.float32)
    if n < 2:
        return targets
    hop = float(frame_times[1] - frame_times[0])
    idx = np.rint((np.asarray(beat_times) - frame_times[0]) / hop).astype(int)
    inside = (idx >= 0) & (idx < n)
    for row, keep in ((0, inside), (1, inside & (np.asarray(positions) == 1))):
        centre = idx[keep]
        for side in (-1, 1):
            nb = np.clip(centre + side, 0, n - 1)
            targets[row, nb] = np.maximum(targets[row, nb], 0.5)
        targets[row, centre] = 1.0
    return targets


@dataclass
class BeatExample:
    track_id: str
    frames: np.ndarray       # (n_mels, F)
    times: np.ndarray        # (F,)
    targets: np.ndarray      # (2, F)
    beats: np.ndarray        # reference beat times (s)
    downbeats: np.ndarray    # reference downbeat times (s)


def load_beat_example(track: Track, cache: TrackerFrameCache,
                      augment: Optional[dict] = None) -> BeatExample:
    """Tracker frames and targets of one track (raises LearnedSSMError on bad input)."""
    from msaf_learned_ssm_jams.beats import read_beats

    try:
        beats, positions = read_beats(track.reference)
    except AnnotationError as exc:
        raise LearnedSSMError(str(exc)) from None
    frames, times, _ = cache.steps(track.audio, augment)
    if augment is not None and augment.get("tempo") is not None:
        beats = beats / float(augment["tempo"])
    return BeatExample(track.track_id, frames, times, beat_targets(beats, positions, times),
                       beats, beats[positions == 1])


def evaluate_tracker(model: BeatTCN, examples: Sequence[BeatExample]) -> dict:
    """Mean beat and downbeat F-measure (mir_eval, 70 ms) over ``examples``."""
    import mir_eval

    model.eval()
    beat_f, down_f = [], []
    with torch.inference_mode():
        for ex in examples:
            act = torch.sigmoid(model(torch.from_numpy(ex.frames)[None]))[0].numpy()
            est = decode_beats(act, ex.times, model.config)
            beat_f.append(mir_eval.beat.f_measure(mir_eval.beat.trim_beats(ex.beats),
                                                  mir_eval.beat.trim_beats(est.times)))
            down_f.append(mir_eval.beat.f_measure(mir_eval.beat.trim_beats(ex.downbeats),
                                                  mir_eval.beat.trim_beats(est.downbeats)))
    return {"beat_F": float(np.mean(beat_f)), "downbeat_F": float(np.mean(down_f))}


def _batch(examples: Sequence[BeatExample], crop: int, rng: np.random.Generator
           ) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for ex in examples:
        n = ex.frames.shape[1]
        if n >= crop:
            start = int(rng.integers(0, n - crop + 1))
            x, y = ex.frames[:, start:start + crop], ex.targets[:, start:start + crop]
        else:  # short track: zero-pad (silence frames, no beats)
            x = np.pad(ex.frames, ((0, 0), (0, crop - n)))
            y = np.pad(ex.targets, ((0, 0), (0, crop - n)))
        xs.append(x)
        ys.append(y)
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def _load_all(tracks: Sequence[Track], cache: TrackerFrameCache, config: BeatTrainConfig,
              with_variants: bool, skipped: dict, progress: bool, what: str
              ) -> list[list[BeatExample]]:
    """Per track: the clean example and its augmented variants."""
    out = []
    augment = config.augment_config()
    for track in tqdm(tracks, desc=f"tracker features ({what})", disable=not progress,
                      leave=False):
        try:
            versions = [load_beat_example(track, cache)]
            if with_variants:
                for v in range(config.augment_variants):
                    params = draw_augmentation(augment, config.seed, track.track_id, v)
                    versions.append(load_beat_example(track, cache, params))
            elif config.augment == "heavy":
                params = draw_augmentation(augment, config.seed + VAL_DRAW_SEED_OFFSET,
                                           track.track_id, 0)
                versions.append(load_beat_example(track, cache, params))
            out.append(versions)
        except LearnedSSMError as exc:
            skipped[track.track_id] = str(exc)
    return out


def _tracker_epoch(model: BeatTCN, optimizer: torch.optim.Optimizer, items: list,
                   config: BeatTrainConfig, epoch: int, progress: bool) -> float:
    """One epoch of tracker training over ``items``; the mean loss."""
    # Everything random in an epoch derives from (seed, epoch): a resumed run repeats
    # exactly what the uninterrupted one would have done.
    rng = np.random.default_rng([config.seed, epoch])
    torch.manual_seed(config.seed * 100003 + epoch)
    order = rng.permutation(len(items))
    model.train()
    losses = []
    steps = range(0, len(order), config.batch_size)
    # Closed on any exit, so that an error message starts a line of its own.
    with tqdm(steps, desc=f"tracker epoch {epoch}", disable=not progress, leave=False) as bar:
        for first in bar:
            x, y = _batch([items[i] for i in order[first:first + config.batch_size]],
                          config.crop_frames, rng)
            loss = F.binary_cross_entropy_with_logits(model(x), y)
            if not torch.isfinite(loss):
                raise TrainingDivergedError(f"non-finite loss at epoch {epoch}; lower --lr")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return float(np.mean(losses))


def train_tracker(train_tracks: Sequence[Track], val_tracks: Sequence[Track], out: PathLike,
                  config: BeatTrainConfig = BeatTrainConfig(),
                  model_config: BeatConfig = BeatConfig(),
                  cache_dir: Optional[PathLike] = None, resume: bool = False,
                  overwrite: bool = False, progress: bool = True) -> dict:
    """Train a beat tracker; the best epoch (validation) is saved to ``out``.

    ``out.state.pt`` (resume state) and ``out.log.jsonl`` (one line per epoch) sit beside
    it, as for :func:`~msaf_learned_ssm_training.trainer.train`.

    Returns
    -------
    dict
        ``best_epoch``, ``best`` (validation scores), ``epochs_run``, ``skipped``.
    """
    out_path, state_path, log_path = run_paths(out)
    _refuse_existing([out_path, state_path, log_path], resume, overwrite)
    initial = load_beat_model(config.init)[0].train() if config.init is not None else None
    if initial is not None:
        model_config = initial.config  # the architecture (and front end) is the initial one's
    out_path.parent.mkdir(parents=True, exist_ok=True)
    cache = TrackerFrameCache(cache_dir, model_config)
    skipped: dict = {}
    train_sets = _load_all(train_tracks, cache, config, True, skipped, progress, "train")
    val_sets = _load_all(val_tracks, cache, config, False, skipped, progress, "validation")
    if not train_sets or not val_sets:
        raise LearnedSSMError(f"no usable {'training' if not train_sets else 'validation'} "
                              f"track ({len(skipped)} skipped: "
                              f"{next(iter(skipped.values()), 'none given')})")
    val = [ex for versions in val_sets for ex in versions]
    items = [ex for versions in train_sets for ex in versions]

    with deterministic():
        torch.manual_seed(config.seed)
        model = initial if initial is not None else BeatTCN(model_config)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        state = {"epoch": 0, "best_epoch": 0, "best": None, "since_best": 0}
        if resume and state_path.is_file():
            saved = read_checkpoint(state_path)
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            state = json.loads(saved["state"])
        for epoch in range(state["epoch"] + 1, config.epochs + 1):
            if state["since_best"] >= config.patience:
                break
            t0 = time.perf_counter()
            loss = _tracker_epoch(model, optimizer, items, config, epoch, progress)
            scores = evaluate_tracker(model, val)
            score = 0.5 * (scores["beat_F"] + scores["downbeat_F"])
            record = {"epoch": epoch, "loss": loss, **scores,
                      "seconds": time.perf_counter() - t0}
            if state["best"] is None or score > 0.5 * (state["best"]["beat_F"]
                                                       + state["best"]["downbeat_F"]):
                state.update(best=scores, best_epoch=epoch, since_best=0)
                save_beat_model(model, out_path, epoch=epoch, validation=scores,
                                train_config=dataclasses.asdict(config))
            else:
                state["since_best"] += 1
            state["epoch"] = epoch
            atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "state": json.dumps(state)}, state_path)
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(json.dumps(record) + "\n")
            if progress:
                tqdm.write(f"epoch {epoch}: loss {record['loss']:.4f}, val beat F "
                           f"{scores['beat_F']:.3f}, downbeat F {scores['downbeat_F']:.3f}")
    return {"best_epoch": state["best_epoch"], "best": state["best"],
            "epochs_run": state["epoch"], "skipped": skipped}
