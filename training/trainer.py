"""The training loop: Adam on the joint loss, validation with mir_eval each epoch, early
stopping, atomic checkpoints and exact resumption.

Two files are written next to ``out`` (``MODEL.pt``):

* ``MODEL.pt``: the best model so far (by the mean of validation HR0.5F and HR3F), a
  plain model file that the plugin and the CLI load;
* ``MODEL.state.pt``: everything needed to resume (model, optimizer, epoch and position in
  the epoch, RNG states, history), written every ``checkpoint_every`` tracks and at the
  end of every epoch.

and ``MODEL.log.jsonl``: one JSON line per epoch (losses, validation scores, seconds).

Determinism: the order of the tracks and the random crops of an epoch derive from
``(seed, epoch)``, and the torch RNG state (dropout) is saved in the resume state, so a
run killed at any point and resumed ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import mir_eval
import numpy as np
import torch
from tqdm.auto import tqdm

from msaf_learned_ssm.checkpoint import atomic_torch_save, checkpoint_dict, read_checkpoint
from msaf_learned_ssm.config import ModelConfig, PeakConfig
from msaf_learned_ssm.errors import CheckpointError, LearnedSSMError
from msaf_learned_ssm.fileio import atomic_write_text
from msaf_learned_ssm.inference import resolve_device
from msaf_learned_ssm.model import SSMNet, cosine_ssm
from msaf_learned_ssm.peaks import boundary_times, pick_peaks

from .corpus import FeatureCache, Track
from .losses import joint_loss, novelty_bce, weighted_bce
from .targets import (ground_truth_novelty, ground_truth_ssm, patch_labels,
                      reference_boundaries)

PathLike = Union[str, os.PathLike]
STATE_VERSION = 1


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
        Which reference annotation to learn (see ``jams_adapters.segments.read_segments``).
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


@dataclass
class Example:
    """One track ready for the model: patches, targets and reference boundaries."""

    track_id: str
    patches: np.ndarray      # (T, n_mels, patch_steps)
    patch_times: np.ndarray  # (T,)
    label_ids: np.ndarray    # (T,)
    boundaries: np.ndarray   # reference boundary times (s)
    duration: float


def load_example(track: Track, cache: FeatureCache, config: TrainConfig) -> Example:
    """Patches and ground truth of one track (raises LearnedSSMError on bad input)."""
    from jams_adapters.segments import read_segments

    patches = cache.patches(track.audio)
    intervals, labels = read_segments(track.reference, namespace=config.namespace,
                                      annotator=config.annotator)
    return Example(track.track_id, patches.data, patches.times,
                   patch_labels(patches.times, intervals, labels),
                   reference_boundaries(intervals), patches.duration)


def _crop(example: Example, max_patches: int, rng: np.random.Generator
          ) -> tuple[np.ndarray, np.ndarray]:
    n = len(example.patches)
    if n <= max_patches:
        return example.patches, example.label_ids
    start = int(rng.integers(0, n - max_patches + 1))
    return (example.patches[start:start + max_patches],
            example.label_ids[start:start + max_patches])


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
        found = pick_peaks(novelty.float().cpu().numpy(), model.config.patch_hop_sec, peaks)
        est = boundary_times(found, ex.patch_times, ex.duration)
        ref = ex.boundaries
        row = {}
        for window in (0.5, 3.0):
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


def _set_torch_rng(state: torch.Tensor, cuda_states: Optional[list]) -> None:
    torch.set_rng_state(state)
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)


def _paths(out: Path) -> tuple[Path, Path, Path]:
    return out, out.with_suffix(".state.pt"), out.with_suffix(".log.jsonl")


def train(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Train SSM-Net; see :func:`_train` for the parameters and the module docstring for
    the files written."""
    # Resumption must reproduce an uninterrupted run bit for bit: use PyTorch's
    # deterministic kernels (e.g. the scatter-add in the backward of the band gathers),
    # then restore the caller's setting.
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        return _train(*args, **kwargs)
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


def _train(train_tracks: Sequence[Track], val_tracks: Sequence[Track], out: PathLike,
          model_config: ModelConfig = ModelConfig(), config: TrainConfig = TrainConfig(),
          cache_dir: Optional[PathLike] = None, device: str = "auto", resume: bool = False,
          progress: bool = True, stop_after_steps: Optional[int] = None,
          on_event: Optional[Callable[[str, dict], None]] = None) -> dict[str, Any]:
    """Train SSM-Net; see the module docstring for the files written.

    Parameters
    ----------
    train_tracks, val_tracks : sequences of Track
    out : path
        The best model's file (``.pt``).
    model_config, config : ModelConfig, TrainConfig
        Ignored when resuming: the saved ones are used.
    cache_dir : path, optional
        Feature cache folder.
    device : str
        ``auto``, ``cpu``, ``cuda``...
    resume : bool
        Continue from ``out``'s resume state if it exists.
    progress : bool
        Show tqdm bars.
    stop_after_steps : int, optional
        Stop (after saving the resume state) once this many optimisation steps were done in
        this call; for tests of resumption.

    Returns
    -------
    dict
        ``history`` (per-epoch records), ``best`` (best validation scores), ``epochs_run``,
        ``stopped`` (``"early"``, ``"epochs"``, ``"steps"``), ``skipped`` tracks with reasons.
    """
    out = Path(out)
    best_path, state_path, log_path = _paths(out)
    dev = resolve_device(device)
    state = None
    if resume and state_path.is_file():
        state = read_checkpoint(state_path)
        if state.get("state_version", 0) > STATE_VERSION:
            raise CheckpointError(f"{state_path}: resume state version "
                                  f"{state.get('state_version')} is newer than supported")
        try:
            model_config = ModelConfig.from_dict(state["model"]["config"])
            config = TrainConfig(**state["train_config"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{state_path}: not a usable resume state "
                                  f"({type(exc).__name__}: {exc})") from exc
    elif resume:
        raise CheckpointError(f"{state_path}: no resume state to continue from")

    torch.manual_seed(config.seed)
    model = SSMNet(model_config).to(dev)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                                 lr=config.lr)
    epoch, position, history, best, stale = 0, 0, [], None, 0
    running = {"loss": 0.0, "ssm_loss": 0.0, "novelty_loss": 0.0, "n": 0}
    if state is not None:
        try:
            model.load_state_dict(state["model"]["state_dict"])
            optimizer.load_state_dict(state["optimizer"])
            epoch, position = int(state["epoch"]), int(state["position"])
            history, best, stale = list(state["history"]), state["best"], int(state["stale"])
            running = dict(state["running"])
            _set_torch_rng(state["torch_rng"], state.get("cuda_rng"))
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            # A file that read_checkpoint accepted but is not a (complete) resume state.
            raise CheckpointError(f"{state_path}: not a usable resume state "
                                  f"({type(exc).__name__}: {exc})") from exc

    cache = FeatureCache(cache_dir, model_config)
    peaks = PeakConfig(**config.peaks)
    skipped: dict[str, str] = {}

    def load_all(tracks: Sequence[Track], what: str) -> list[Example]:
        examples = []
        for track in tqdm(tracks, desc=f"features ({what})", disable=not progress,
                          leave=False):
            try:
                examples.append(load_example(track, cache, config))
            except LearnedSSMError as exc:
                skipped[track.track_id] = str(exc)
        return examples

    train_examples = load_all(train_tracks, "train")
    val_examples = load_all(val_tracks, "validation")
    if not train_examples:
        raise LearnedSSMError("no usable training track: " + "; ".join(
            f"{k}: {v}" for k, v in list(skipped.items())[:5]))

    def save_state() -> None:
        atomic_torch_save({
            "state_version": STATE_VERSION, "model": checkpoint_dict(model),
            "optimizer": optimizer.state_dict(), "epoch": epoch, "position": position,
            "history": history, "best": best, "stale": stale, "running": running,
            "train_config": asdict(config), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }, state_path)

    def write_log() -> None:
        atomic_write_text(log_path, "".join(json.dumps(h) + "\n" for h in history))

    steps_done, stopped = 0, "epochs"
    while epoch < config.epochs:
        started = time.perf_counter()
        order = np.random.default_rng([config.seed, epoch]).permutation(len(train_examples))
        model.train()
        bar = tqdm(total=len(order), initial=position, desc=f"epoch {epoch + 1}/{config.epochs}",
                   disable=not progress, leave=False)
        while position < len(order):
            ex = train_examples[order[position]]
            crop_rng = np.random.default_rng([config.seed, epoch, position])
            patches, label_ids = _crop(ex, config.max_patches, crop_rng)
            losses = training_step(model, torch.from_numpy(patches).to(dev), label_ids, config)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            optimizer.step()
            for key in ("loss", "ssm_loss", "novelty_loss"):
                running[key] += float(losses[key].detach())
            running["n"] += 1
            position += 1
            steps_done += 1
            bar.update(1)
            bar.set_postfix(loss=f"{running['loss'] / running['n']:.4f}")
            if position % config.checkpoint_every == 0 and position < len(order):
                save_state()
            if stop_after_steps is not None and steps_done >= stop_after_steps:
                save_state()
                bar.close()
                return {"history": history, "best": best, "epochs_run": epoch,
                        "stopped": "steps", "skipped": skipped}
        bar.close()
        scores = evaluate(model, val_examples, peaks, dev) if val_examples else {"score": 0.0}
        record = {"epoch": epoch + 1,
                  **{k: running[k] / max(running["n"], 1)
                     for k in ("loss", "ssm_loss", "novelty_loss")},
                  **{f"val_{k}": v for k, v in scores.items()},
                  "seconds": time.perf_counter() - started}
        history.append(record)
        improved = best is None or scores["score"] > best["val_score"] + 1e-9
        if improved:
            best, stale = dict(record), 0
            atomic_torch_save(checkpoint_dict(model, epoch=epoch + 1, metrics=record,
                                              train_config=asdict(config)), best_path)
        else:
            stale += 1
        epoch, position = epoch + 1, 0
        running = {"loss": 0.0, "ssm_loss": 0.0, "novelty_loss": 0.0, "n": 0}
        save_state()
        write_log()
        if on_event is not None:
            on_event("epoch", record)
        if progress:
            tqdm.write(f"epoch {record['epoch']}: loss {record['loss']:.4f} "
                       f"val HR0.5F {scores.get('HR0.5F', float('nan')):.3f} "
                       f"HR3F {scores.get('HR3F', float('nan')):.3f}"
                       + (" *" if improved else ""))
        if stale >= config.patience:
            stopped = "early"
            break
    return {"history": history, "best": best, "epochs_run": epoch, "stopped": stopped,
            "skipped": skipped}


