"""Configuration objects: the model's architecture and front-end, and peak picking.

A :class:`ModelConfig` is stored inside every checkpoint, so a model file alone says how
its input features must be computed and how its layers are shaped.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np

from .errors import ConfigError

#: Values of :attr:`ModelConfig.patch_grid`.
PATCH_GRIDS = ("frame", "beat")


@dataclass(frozen=True)
class ModelConfig:
    """Front-end and architecture settings of an SSM-Net model.

    The defaults are those of the author's release (Peeters, ISMIR 2023).

    Attributes
    ----------
    sample_rate : int
        Audio is resampled to this rate (Hz) and down-mixed to mono.
    n_fft, hop_length : int
        STFT size and hop (samples).
    n_mels : int
        Number of mel bands (the patch height).
    fmax : float
        Highest mel frequency (Hz).
    log_gamma : float
        Compression ``log(1 + log_gamma * mel)``.
    step_target_sec : float
        Mel frames are averaged in groups of ``floor(step_target_sec / (hop/sr))`` frames.
    patch_half_steps : int
        A patch spans ``2 * patch_half_steps`` averaged steps (the patch width).
    patch_hop_steps : int
        Hop between consecutive patch centres, in averaged steps.
    attention_layers : int
        Number N of Transformer encoder blocks after the convolutions (0, 1, 3...).
    attention_heads, attention_ff : int
        Heads and feed-forward width of each Transformer block.
    dropout : float
        Dropout inside the Transformer blocks (active in training only).
    kernel_count : int
        Number K of learnable novelty kernels.
    kernel_half_sec : float
        Half-length of the novelty kernels (s); the kernel is ``2 * round(half / step) + 1`` wide.
    kernel_sigma_sec : float
        Gaussian taper of the checkerboard initialisation (s); kernel k gets
        ``round(sigma / step) - k`` patches.
    kernel_init : str
        ``"checkerboard"`` (Gaussian-tapered checkerboard) or ``"random"`` (PyTorch default).
    freeze_kernels : bool
        Keep the novelty kernels at their initial value during training.
    patch_grid : str
        Where patches are centred. ``"frame"`` (the author's): every ``patch_hop_steps``
        steps. ``"beat"``: on the beats of the package's beat tracker, at the metrical
        level whose period is nearest ``patch_hop_sec``
        (:func:`~msaf_learned_ssm.features.beat_centres`); the novelty kernels then count
        beats (``kernel_size`` beats wide) and peak-picking durations are converted with
        the track's median beat period (:meth:`grid_hop_sec`).
    """

    sample_rate: int = 22050
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 80
    fmax: float = 8000.0
    log_gamma: float = 100.0
    step_target_sec: float = 0.1
    patch_half_steps: int = 20
    patch_hop_steps: int = 5
    attention_layers: int = 3
    attention_heads: int = 8
    attention_ff: int = 128
    dropout: float = 0.1
    kernel_count: int = 3
    kernel_half_sec: float = 10.0
    kernel_sigma_sec: float = 5.0
    kernel_init: str = "checkerboard"
    freeze_kernels: bool = False
    patch_grid: str = "frame"

    def __post_init__(self) -> None:
        self._check_types_and_signs()
        self._check_upper_bounds()

    def _check_upper_bounds(self) -> None:
        # Generous bounds, far above any trained model, so that a crafted model file cannot
        # make the model allocate gigabytes (or overflow) before its weights are checked.
        for name, top in _UPPER_BOUNDS.items():
            value = getattr(self, name)
            if value > top:
                raise ConfigError(f"ModelConfig.{name} = {value!r} is above the largest "
                                  f"supported value {top}")

    def _check_types_and_signs(self) -> None:
        positive_ints = ["sample_rate", "n_fft", "hop_length", "n_mels", "patch_half_steps",
                         "patch_hop_steps", "attention_heads", "attention_ff", "kernel_count"]
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.attention_layers, int) or self.attention_layers < 0:
            raise ConfigError(
                f"ModelConfig.attention_layers must be an integer >= 0, got {self.attention_layers!r}")
        for name in ["fmax", "log_gamma", "step_target_sec", "kernel_half_sec", "kernel_sigma_sec"]:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"ModelConfig.{name} must be a positive number, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if self.patch_grid not in PATCH_GRIDS:
            raise ConfigError(f"ModelConfig.patch_grid must be one of {', '.join(PATCH_GRIDS)}, "
                              f"got {self.patch_grid!r}")
        if self.kernel_init not in ("checkerboard", "random"):
            raise ConfigError(
                f"ModelConfig.kernel_init must be 'checkerboard' or 'random', got {self.kernel_init!r}")
        if self.fmax > self.sample_rate / 2:
            raise ConfigError(f"ModelConfig.fmax ({self.fmax} Hz) is above Nyquist "
                              f"({self.sample_rate / 2} Hz)")
        if 128 % self.attention_heads:
            raise ConfigError("ModelConfig.attention_heads must divide the embedding size 128, "
                              f"got {self.attention_heads}")
        if self.frames_per_step < 1:
            raise ConfigError("ModelConfig.step_target_sec is shorter than one STFT hop")
        if self.n_mels < 16 or self.patch_steps < 16:
            raise ConfigError("the convolution stack pools by 16 along both axes: n_mels and "
                              f"2 * patch_half_steps must be >= 16, got {self.n_mels}, {self.patch_steps}")
        if self.kernel_sigma_steps - (self.kernel_count - 1) <= 0:
            raise ConfigError("kernel_sigma_sec is too short for kernel_count kernels "
                              "(sigma of the last kernel would be <= 0 patches)")

    # ---- derived quantities -------------------------------------------------------------
    @property
    def frame_sec(self) -> float:
        """Hop of the mel frames (s)."""
        return self.hop_length / self.sample_rate

    @property
    def frames_per_step(self) -> int:
        """Number of mel frames averaged into one step (4 with the defaults)."""
        return int(math.floor(self.step_target_sec / self.frame_sec))

    @property
    def step_sec(self) -> float:
        """Duration of one averaged step (s), about 0.093 s with the defaults."""
        return self.frames_per_step * self.frame_sec

    @property
    def patch_steps(self) -> int:
        """Width of a patch in averaged steps (40 with the defaults)."""
        return 2 * self.patch_half_steps

    @property
    def patch_hop_sec(self) -> float:
        """Time between consecutive patches (s), 0.4644 s with the defaults."""
        return self.patch_hop_steps * self.step_sec

    @property
    def kernel_half_patches(self) -> int:
        """Half-size L of the novelty kernels, in patches (22 with the defaults)."""
        return int(round(self.kernel_half_sec / self.patch_hop_sec))

    @property
    def kernel_size(self) -> int:
        """Width ``2 L + 1`` of the novelty kernels, in patches (45 with the defaults)."""
        return 2 * self.kernel_half_patches + 1

    @property
    def kernel_sigma_steps(self) -> int:
        """Gaussian taper of the first kernel, in patches (11 with the defaults)."""
        return int(round(self.kernel_sigma_sec / self.patch_hop_sec))

    def grid_hop_sec(self, patch_times: np.ndarray) -> float:
        """Time between consecutive patches (s) of a track whose patch centres are
        ``patch_times``: :attr:`patch_hop_sec` on the frame grid, the median spacing of
        the centres on the beat grid (:attr:`patch_hop_sec` with fewer than 2 patches)."""
        if self.patch_grid == "beat" and len(patch_times) > 1:
            return float(np.median(np.diff(np.asarray(patch_times, dtype=float))))
        return self.patch_hop_sec

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dictionary of the settings."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ModelConfig":
        """Build a config from a dictionary, rejecting unknown keys with a clear error."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"a model config must be a dictionary of settings, got "
                              f"{type(values).__name__} {_short_repr(values)}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(map(str, set(values) - known))
        if unknown:
            raise ConfigError(f"unknown ModelConfig settings: {', '.join(unknown)}")
        return cls(**dict(values))

    def replace(self, **changes: Any) -> "ModelConfig":
        """Copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _short_repr(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


#: Largest accepted value of each ModelConfig setting (see ModelConfig._check_upper_bounds).
_UPPER_BOUNDS = {
    "sample_rate": 192000, "n_fft": 65536, "hop_length": 65536, "n_mels": 512,
    "log_gamma": 1e6, "step_target_sec": 10.0, "patch_half_steps": 500, "patch_hop_steps": 500,
    "attention_layers": 24, "attention_heads": 128, "attention_ff": 8192, "kernel_count": 16,
    "kernel_half_sec": 120.0, "kernel_sigma_sec": 120.0,
}


#: Longest peak-picking duration accepted (s): a day, far beyond any recording; larger
#: values would overflow when converted to a number of patches.
PEAK_MAX_SEC = 86400.0


@dataclass(frozen=True)
class PeakConfig:
    """Peak-picking settings of the novelty curve, all durations in seconds.

    Attributes
    ----------
    mean_half_sec : float
        Each novelty value is divided by its local mean over ``+- mean_half_sec``
        (at most :data:`PEAK_MAX_SEC`).
    min_distance_sec : float
        Minimum distance between two peaks (at most :data:`PEAK_MAX_SEC`).
    threshold : float
        Keep peaks whose value / local-mean ratio is at least this.
    """

    mean_half_sec: float = 10.0
    min_distance_sec: float = 7.0
    threshold: float = 1.35

    def __post_init__(self) -> None:
        for name in ("mean_half_sec", "min_distance_sec", "threshold"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) \
                    or not math.isfinite(value) or value < 0:
                raise ConfigError(f"PeakConfig.{name} must be a finite number >= 0, got {value!r}")
            if name.endswith("_sec") and value > PEAK_MAX_SEC:
                raise ConfigError(f"PeakConfig.{name} = {value!r} s is above the longest "
                                  f"supported duration, {PEAK_MAX_SEC:g} s")

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    def updated(self, **changes: Optional[float]) -> "PeakConfig":
        """A copy with the given fields changed; ``None`` values keep the current ones."""
        return dataclasses.replace(self, **{k: float(v) for k, v in changes.items()
                                            if v is not None})


#: The fine level of the hierarchical (two-level) mode: a lower ratio threshold and a
#: shorter minimum distance than the flat level; its local-mean window is the flat level's.
FINE_LEVEL_PEAKS = PeakConfig(mean_half_sec=10.0, min_distance_sec=3.5, threshold=1.15)
