"""Inference: audio file -> patches -> embeddings -> novelty -> boundaries.

:class:`Analyzer` keeps one model loaded (on the GPU when there is one) and segments many
files; with a GPU (or spare CPU cores) it decodes the next files in background threads
while the current one is computed.
"""

from __future__ import annotations

import copy
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Optional, Union

import numpy as np
import torch

from msaf_learned_ssm_jams.fileio import PathLike
from .audio import load_audio, resample
from .checkpoint import load_model
from .config import ModelConfig, PeakConfig
from .errors import CheckpointError, ConfigError, LearnedSSMError
from .features import Patches, compute_patches
from .model_files import file_sha256, model_name, resolve_model
from .model import SSMNet, cosine_ssm
from .parallel import default_threads
from .peaks import novelty_to_boundaries
from .sync import check_sync, sync_boundaries

if TYPE_CHECKING:  # the tracker is imported when a beat or bar mode first needs it
    from .beats import Beats, BeatTCN, BeatTracker




#: Patches per convolution call on the CPU (see Analyzer.__init__).
CPU_CONV_CHUNK = 16

#: ``precision`` -> autocast dtype (None: plain float32).
_AUTOCAST_DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: Largest difference of the novelty curve (probabilities in [0, 1]) between a mixed
#: precision run and float32 that the tests accept.
MIXED_PRECISION_TOLERANCE = 0.01


class ShortAudioWarning(UserWarning):
    """The audio is too short (or silent) to be segmented: one segment is returned."""


def default_model_path() -> Path:
    """Path of the trained model shipped with the package.

    Raises
    ------
    CheckpointError
        When the package was installed without its model.
    """
    path = resolve_model("default")
    if not path.is_file():
        raise CheckpointError(f"{path}: the default model is missing from the installation; "
                              "pass a model file explicitly (--model / config['ssm_model'])")
    return path


def resolve_device(device: Union[str, torch.device] = "auto") -> torch.device:
    """``"auto"`` gives CUDA when available, else CPU; other values are checked.

    Raises
    ------
    ConfigError
        Unknown device string, or CUDA requested on a machine without it.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r} (use auto, cpu, cuda or cuda:N)") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    return resolved


@dataclass
class Analysis:
    """What the model says about one track.

    Attributes
    ----------
    boundaries : np.ndarray, shape (n_boundaries,)
        Boundary times (s), starting at 0 and ending at the track's duration.
    peaks : np.ndarray of int, shape (n_boundaries - 2,) or fewer
        Indices of the novelty peaks (patch indices) that gave the inner boundaries.
    patch_times : np.ndarray, shape (T,)
        Time of each patch's centre (s).
    novelty : np.ndarray, shape (T,)
        Novelty curve (boundary probability per patch).
    embeddings : np.ndarray, shape (T, 128)
        Unit-norm patch embeddings; :meth:`ssm` gives their self-similarity.
    duration : float
        Track duration (s).
    source : str
        The file analysed, or ``"<array>"``.
    sync : str
        How the boundaries were placed: ``"frame"`` (novelty peaks), ``"beat"`` or
        ``"bar"`` (peaks moved to the nearest estimated beat / downbeat).
    beats : Beats or None
        The estimated beat grid (beat and bar modes), with bar positions.
    """

    boundaries: np.ndarray
    peaks: np.ndarray
    patch_times: np.ndarray
    novelty: np.ndarray
    embeddings: np.ndarray
    duration: float
    source: str = "<array>"
    sync: str = "frame"
    beats: Optional["Beats"] = None

    def ssm(self) -> np.ndarray:
        """Scaled cosine SSM of the embeddings, shape (T, T), values in [0, 1]."""
        e = torch.from_numpy(self.embeddings)
        return cosine_ssm(e).numpy()


def _trivial(patches: Patches, source: str, why: str) -> Analysis:
    warnings.warn(f"{source}: {why}; returning a single segment [0, {patches.duration:.2f}] s",
                  ShortAudioWarning, stacklevel=3)
    n = len(patches)
    return Analysis(boundaries=np.array([0.0, patches.duration]), peaks=np.zeros(0, dtype=int),
                    patch_times=patches.times, novelty=np.zeros(n, dtype=np.float32),
                    embeddings=np.zeros((n, 128), dtype=np.float32),
                    duration=patches.duration, source=source)


class Analyzer:
    """A loaded model that segments audio files.

    Parameters
    ----------
    model : str, os.PathLike, SSMNet or None
        A shipped model's name (``"default"``, ``"author-nbatt1"``, ``"author-nbatt3"``;
        None means ``"default"``), a model file (this package's checkpoint or an author's
        state_dict), or an :class:`SSMNet`.
    device : str or torch.device
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
    peaks : PeakConfig, optional
        Peak-picking settings; default the model file's own (``peaks`` in the file), else
        the author's 10 / 7 / 1.35.
    sync : {"frame", "beat", "bar"}, optional
        Where boundaries may fall: at novelty peaks (``"frame"``), or moved to the nearest
        beat or downbeat of the package's beat tracker (:mod:`msaf_learned_ssm.beats`).
        Default: the model file's own (``sync`` in the file), else ``"frame"``.
    beat_model : path-like or BeatTCN, optional
        Beat tracker for the beat and bar modes (default: the shipped one).
    precision : {"float32", "bfloat16", "float16"}
        Arithmetic of the encoder and novelty head: float32, or mixed precision
        (``torch.autocast``) for throughput on GPUs; the novelty curve stays within
        :data:`MIXED_PRECISION_TOLERANCE` of float32 (``tests/test_mixed_precision.py``).

    Attributes
    ----------
    identity : dict
        ``name`` (shipped model's name, or the file name) and ``sha256`` (of the file; None
        for an in-memory model): what outputs record about the model.

    Examples
    --------
    >>> analyzer = Analyzer()                                   # doctest: +SKIP
    >>> analyzer.analyze("song.mp3").boundaries                 # doctest: +SKIP
    array([  0.  ,  13.05, ..., 196.95])
    """

    def __init__(self, model: Union[PathLike, SSMNet, None] = None,
                 device: Union[str, torch.device] = "auto",
                 peaks: Optional[PeakConfig] = None, sync: Optional[str] = None,
                 beat_model: Union[PathLike, "BeatTCN", None] = None,
                 precision: str = "float32") -> None:
        if precision not in _AUTOCAST_DTYPES:
            raise ConfigError(f"precision must be one of {', '.join(_AUTOCAST_DTYPES)}, "
                              f"got {precision!r}")
        self.precision = precision
        self.device = resolve_device(device)
        if isinstance(model, SSMNet):
            # A copy: the CPU layout settings below must not change the caller's module.
            self.model, self.meta = copy.deepcopy(model), {}
            self.identity = {"name": "<in-memory model>", "sha256": None}
        else:
            path = default_model_path() if model in (None, "default") else resolve_model(model)
            self.model, self.meta = load_model(path, "cpu")
            self.identity = {"name": model_name(path), "sha256": file_sha256(path)}
        self.model = self.model.to(self.device).eval()
        if self.device.type == "cpu":
            # Measured on 2 CPU cores (bench/speed.py, encoder stage of a 199 s track:
            # 0.42 s before, 0.12 s after): oneDNN's convolutions are much faster with
            # channels-last weights and batches of 16 patches that stay in cache than with
            # the default layout and 512 patches at once; outputs differ by < 1e-6
            # (tests/test_parity.py checks the Analyzer path too).
            self.model.encoder.conv.to(memory_format=torch.channels_last)
            self.model.encoder.conv_chunk = CPU_CONV_CHUNK
        if peaks is None:
            try:
                peaks = PeakConfig(**self.meta.get("peaks", {}))
            except (TypeError, ConfigError) as exc:
                raise CheckpointError(f"{self.identity['name']}: invalid peak "
                                      f"settings in the model file ({exc})") from None
        self.peaks = peaks
        self.sync = check_sync(sync if sync is not None else self.meta.get("sync", "frame"))
        self._beat_model = beat_model
        self._tracker = None
        self._tracker_lock = threading.Lock()

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    @property
    def tracker(self) -> "BeatTracker":
        """The beat tracker (loaded on first use), on this Analyzer's device."""
        with self._tracker_lock:
            if self._tracker is None:
                from .beats import BeatTracker
                from .features import frontend_settings

                tracker = BeatTracker(self._beat_model, self.device)
                if tracker.config.frontend != frontend_settings(self.config):
                    raise ConfigError("the beat tracker was trained on another log-mel "
                                      "front-end than the model's; beat and bar modes need "
                                      "the same one")
                self._tracker = tracker
            return self._tracker

    def patches(self, path: PathLike, n_threads: Optional[int] = None,
                sync: Optional[str] = None) -> Patches:
        """Decode ``path`` and compute its patches (CPU work, thread-safe).

        ``n_threads``: threads for decoding and the STFT; None follows
        ``torch.get_num_threads()``, so that one setting bounds all the CPU work.
        ``sync`` (default ``self.sync``): the log-mel is kept for the beat and bar modes.
        """
        n_threads = n_threads or torch.get_num_threads()
        y = load_audio(path, self.config.sample_rate, n_threads)
        keep_mel = check_sync(sync or self.sync) != "frame"
        return compute_patches(y, self.config, n_threads, keep_mel=keep_mel)

    @torch.inference_mode()
    def analyze_patches(self, patches: Patches, source: str = "<array>",
                        peaks: Optional[PeakConfig] = None, sync: Optional[str] = None
                        ) -> Analysis:
        """Segment a track from its patches (``peaks``, ``sync``: for this call only,
        default ``self.peaks``, ``self.sync``; beat and bar modes need ``patches.mel``).

        Tracks shorter than the novelty kernel (``config.kernel_size`` patches, about
        21 s with the defaults), or silent, give one segment and a :class:`ShortAudioWarning`.
        """
        n = len(patches)
        if n == 0:
            return _trivial(patches, source, "audio shorter than one patch")
        if n < self.model.novelty.size:
            return _trivial(patches, source, f"audio shorter than the novelty kernel "
                                             f"({n} < {self.model.novelty.size} patches)")
        if not np.any(patches.data):
            return _trivial(patches, source, "audio is silent (constant features)")
        x = torch.from_numpy(patches.data).to(self.device)
        dtype = _AUTOCAST_DTYPES[self.precision]
        with torch.autocast(self.device.type, dtype=dtype or torch.float32,
                            enabled=dtype is not None):
            embeddings, novelty = self.model(x)
        novelty_np = novelty.float().cpu().numpy()
        if not np.all(np.isfinite(novelty_np)):
            raise CheckpointError(f"{self.identity['name']}: the model gives a "
                                  f"non-finite novelty curve for {source}")
        found, boundaries = novelty_to_boundaries(novelty_np, patches.times, patches.duration,
                                                  self.config.patch_hop_sec, peaks or self.peaks)
        sync = check_sync(sync or self.sync)
        beats = None
        if sync != "frame":
            if patches.mel is None:
                raise ConfigError(f"sync={sync!r} needs the log-mel: compute the patches "
                                  "with compute_patches(..., keep_mel=True)")
            beats = self.tracker.track_mel(patches.mel)
            boundaries = sync_boundaries(boundaries, beats, sync)
        return Analysis(boundaries=boundaries,
                        peaks=found, patch_times=patches.times, novelty=novelty_np,
                        embeddings=embeddings.float().cpu().numpy(),
                        duration=patches.duration, source=source, sync=sync, beats=beats)

    def analyze_audio(self, y: np.ndarray, sample_rate: Optional[int] = None) -> Analysis:
        """Segment a mono signal (resampled when ``sample_rate`` differs from the model's)."""
        y = np.asarray(y, dtype=np.float32)
        if y.ndim != 1 or not np.all(np.isfinite(y)):
            raise ConfigError("audio must be a 1-D array of finite samples")
        if y.size == 0:
            # An empty signal has no duration to segment (a file's 0 samples: AudioLoadError).
            raise ConfigError("audio holds no samples")
        sr = sample_rate or self.config.sample_rate
        if sr != self.config.sample_rate:
            y = resample(y, sr, self.config.sample_rate)
        return self.analyze_patches(compute_patches(y, self.config, torch.get_num_threads(),
                                                    keep_mel=self.sync != "frame"))

    def analyze(self, path: PathLike, peaks: Optional[PeakConfig] = None,
                sync: Optional[str] = None) -> Analysis:
        """Segment one audio file (``peaks``, ``sync``: for this call only, default
        ``self.peaks``, ``self.sync``; a shared Analyzer is never modified).

        Raises
        ------
        AudioLoadError
            The file is missing, a directory, not decodable audio, holds no samples, or
            holds NaN or infinite samples.

        Warns
        -----
        ShortAudioWarning
            Audio shorter than the novelty kernel, or silent: one segment is returned.
        """
        return self.analyze_patches(self.patches(path, sync=sync), str(path), peaks, sync)

    def default_prefetch(self) -> int:
        """Files :meth:`analyze_many` decodes ahead by default: 2 with a GPU or spare CPU
        cores (cores beyond ``torch.get_num_threads()``), else 0."""
        spare_cores = default_threads() > torch.get_num_threads()
        return 2 if self.device.type != "cpu" or spare_cores else 0

    def analyze_many(self, paths: Iterable[PathLike], prefetch: Optional[int] = None
                     ) -> Iterator[tuple[str, Union[Analysis, LearnedSSMError]]]:
        """Segment many files with the model loaded once.

        Yields ``(path, Analysis)``, or ``(path, error)`` for a file that failed, so one bad
        file does not stop a batch.

        Parameters
        ----------
        paths : iterable of path-like
        prefetch : int >= 0 or None
            Files decoded ahead in background threads, overlapping with the model. None:
            2 when the model runs on a GPU or the CPU has cores that torch does not use,
            else 0. On a CPU whose cores all run the encoder, decoding ahead only competes
            with it and the batch is slower (``bench/results/speed.md``, batch rows).
        """
        if prefetch is None:
            prefetch = self.default_prefetch()
        paths = [str(p) for p in paths]
        if prefetch < 1:
            for path in paths:
                try:
                    yield path, self.analyze(path)
                except LearnedSSMError as exc:
                    yield path, exc
            return
        # Files decode one thread each: the parallelism is across files, beside the model.
        with ThreadPoolExecutor(max_workers=prefetch) as pool:
            futures = [pool.submit(self.patches, p, 1) for p in paths[:prefetch]]
            for i, path in enumerate(paths):
                if i + prefetch < len(paths):
                    futures.append(pool.submit(self.patches, paths[i + prefetch], 1))
                try:
                    patches = futures[i].result()
                    yield path, self.analyze_patches(patches, path)
                except LearnedSSMError as exc:
                    yield path, exc
                futures[i] = None  # free the patches of finished files


_SHARED_LOCK = threading.Lock()
_SHARED: dict = {}


def shared_analyzer(model: Union[str, os.PathLike, None] = "default",
                    device: Union[str, torch.device] = "auto") -> Analyzer:
    """An :class:`Analyzer` for (model, device) loaded once per process and then reused.

    For workers that segment many files one call at a time (MSAF's batch workers, Dask
    workers): the model is loaded once, not per file.
    """
    key = (str(model if model is not None else "default"), str(device))
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = Analyzer(model, device)
        return _SHARED[key]
