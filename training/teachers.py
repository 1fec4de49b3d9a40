"""Real-audio teachers: the SSM and novelty curve that trained models (the author's
checkpoints, learned on real recordings) give an unlabelled track, averaged, as soft
targets of the teacher loss (:func:`~msaf_learned_ssm_training.losses.soft_bce`).

Teachers run on the *clean* audio; a student that trains on an augmented draw of the track
sees the same targets, moved to its own patch times (a tempo change stretches the time
axis), so augmentation teaches invariance rather than copying the teachers' response to
the distortion. Targets are cached per audio file and teacher set (keyed by content and
the teachers' file hashes), written atomically and checked when read.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from msaf_learned_ssm.checkpoint import load_model
from msaf_learned_ssm.errors import ConfigError
from msaf_learned_ssm.features import frontend_settings
from msaf_learned_ssm.fileio import PathLike, atomic_open
from msaf_learned_ssm.model import SSMNet, cosine_ssm
from msaf_learned_ssm.model_files import file_sha256, model_name, resolve_model

from .corpus import FeatureCache, file_digest, load_npz

__all__ = ["Teacher", "TeacherTargets", "load_teachers", "teacher_records", "teacher_outputs",
           "align_targets", "TeacherCache"]


@dataclass(frozen=True)
class Teacher:
    """A loaded teacher model and what identifies it (shipped name or file name, hash)."""

    name: str
    sha256: str
    model: SSMNet

    @property
    def record(self) -> str:
        """``"NAME sha256:HASH"``, as a run's config records it."""
        return f"{self.name} sha256:{self.sha256}"


@dataclass
class TeacherTargets:
    """The teachers' mean outputs for one track, on the teachers' patch grid.

    Attributes
    ----------
    ssm : np.ndarray, shape (T, T), float32
        Mean of the teachers' SSMs (``1 - ||e_i - e_j||^2 / 4``), values in [0, 1].
    novelty : np.ndarray, shape (T,), float32
        Mean of the teachers' novelty curves, values in [0, 1].
    times : np.ndarray, shape (T,)
        Patch centres (s) of the clean audio.
    """

    ssm: np.ndarray
    novelty: np.ndarray
    times: np.ndarray


def load_teachers(models: Sequence[PathLike]) -> list[Teacher]:
    """Load teacher models by shipped name or file, on the CPU, in eval mode.

    Raises
    ------
    ConfigError
        No teacher, a teacher named twice, or teachers whose front-ends differ (their
        outputs could not be averaged patch by patch).
    CheckpointError
        A model file that does not load (naming it).
    """
    if not models:
        raise ConfigError("no teacher model given")
    teachers = []
    for model in models:
        path = resolve_model(model)
        loaded, _ = load_model(path, "cpu")
        teachers.append(Teacher(model_name(path), file_sha256(path), loaded.eval()))
    if len({t.sha256 for t in teachers}) < len(teachers):
        raise ConfigError(f"a teacher is named twice: {', '.join(t.name for t in teachers)}")
    settings = [frontend_settings(t.model.config) for t in teachers]
    if any(s != settings[0] for s in settings[1:]) or \
            any(t.model.config.patch_grid != "frame" for t in teachers):
        raise ConfigError("teachers must share one front-end and the frame grid: "
                          + ", ".join(t.name for t in teachers))
    return teachers


def teacher_records(teachers: Sequence[Teacher]) -> list[str]:
    """What a run records of its teachers (:attr:`Teacher.record` of each)."""
    return [t.record for t in teachers]


@torch.inference_mode()
def teacher_outputs(teachers: Sequence[Teacher], patches: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Mean SSM and novelty of the teachers on one track's patches.

    Parameters
    ----------
    teachers : sequence of Teacher
    patches : np.ndarray, shape (T, n_mels, patch_steps)

    Returns
    -------
    ssm : np.ndarray, shape (T, T), float32
    novelty : np.ndarray, shape (T,), float32
    """
    x = torch.from_numpy(np.ascontiguousarray(patches, dtype=np.float32))
    ssm = torch.zeros(len(x), len(x))
    novelty = torch.zeros(len(x))
    for teacher in teachers:
        embeddings, curve = teacher.model(x)
        ssm += cosine_ssm(embeddings).float()
        novelty += curve.float()
    n = float(len(teachers))
    return (ssm / n).numpy(), (novelty / n).numpy()


def align_targets(targets: TeacherTargets, times: np.ndarray, time_scale: float = 1.0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The targets at other patch times: each patch takes the nearest teacher patch.

    Parameters
    ----------
    targets : TeacherTargets
    times : np.ndarray, shape (T',)
        Patch centres (s) of the student's (possibly augmented) audio.
    time_scale : float
        Clean time = ``times * time_scale`` (an augmentation's tempo factor; 1 without).

    Returns
    -------
    ssm : np.ndarray, shape (T', T'), float32
    novelty : np.ndarray, shape (T',), float32
    """
    if len(targets.times) == 0:
        raise ValueError("the teachers' targets are empty")
    clean = np.asarray(times, dtype=float) * float(time_scale)
    right = np.clip(np.searchsorted(targets.times, clean), 1, len(targets.times) - 1)
    left = right - 1
    if len(targets.times) == 1:
        index = np.zeros(len(clean), dtype=int)
    else:
        closer_left = np.abs(clean - targets.times[left]) <= np.abs(targets.times[right] - clean)
        index = np.where(closer_left, left, right)
    return targets.ssm[np.ix_(index, index)], targets.novelty[index]


class TeacherCache:
    """:class:`TeacherTargets` per audio file, computed once and cached on disk.

    Parameters
    ----------
    cache_dir : path or None
        Where entries live (None: no caching).
    teachers : sequence of Teacher
    """

    def __init__(self, cache_dir: Optional[PathLike], teachers: Sequence[Teacher]) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.teachers = list(teachers)
        self.features = FeatureCache(cache_dir, self.teachers[0].model.config)
        key = json.dumps({"teachers": sorted(t.sha256 for t in self.teachers),
                          "frontend": frontend_settings(self.teachers[0].model.config)},
                         sort_keys=True)
        self._key = hashlib.sha256(key.encode()).hexdigest()[:12]

    def path_for(self, audio: PathLike) -> Path:
        assert self.cache_dir is not None
        return self.cache_dir / f"{file_digest(Path(audio))}-teachers{self._key}.npz"

    def targets(self, audio: PathLike, n_threads: Optional[int] = None) -> TeacherTargets:
        """The teachers' mean outputs on the clean ``audio`` (cached)."""
        path = self.path_for(audio) if self.cache_dir is not None else None
        if path is not None and path.is_file():
            cached = self._read(path)
            if cached is not None:
                return cached
        patches = self.features.patches(audio, None, n_threads)
        ssm, novelty = teacher_outputs(self.teachers, patches.data)
        targets = TeacherTargets(ssm, novelty, np.asarray(patches.times, dtype=float))
        if path is not None:
            with atomic_open(path, "wb") as handle:
                # float16 halves the cache; the targets are probabilities (error < 5e-4).
                np.savez(handle, ssm=ssm.astype(np.float16), novelty=novelty,
                         times=targets.times)
        return targets

    @staticmethod
    def _read(path: Path) -> Optional[TeacherTargets]:
        try:
            data = load_npz(path)
            ssm = data["ssm"].astype(np.float32)
            novelty, times = data["novelty"], data["times"]
            n = len(times)
            if ssm.shape != (n, n) or novelty.shape != (n,) or not np.isfinite(ssm).all() \
                    or not np.isfinite(novelty).all():
                raise ValueError("unexpected shapes or values")
            return TeacherTargets(ssm, novelty.astype(np.float32), times)
        except Exception as exc:  # any failure means a corrupt entry: rebuild it
            warnings.warn(f"{path}: corrupt teacher cache entry ({exc}); recomputing")
            return None
