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
from typing import TYPE_CHECKING, Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import torch

from msaf_learned_ssm_jams.fileio import PathLike
from .audio import as_float_signal, as_path, check_sample_rate, load_audio, resample
from .checkpoint import load_model, model_settings
from .config import ModelConfig, PeakConfig
from .errors import CheckpointError, ConfigError, LearnedSSMError
from .features import Patches, compute_patches, to_beat_grid
from .labels import beat_chroma
from .model_files import file_sha256, model_name, resolve_model
from .model import SSMNet, cosine_ssm
from .parallel import (WORKER_MEMORY_BYTES, default_threads, default_workers, memory_cap,
                       worker_threads)
from .peaks import novelty_to_boundaries
from .sync import check_sync, sync_boundaries
from .workers import map_in_processes

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
    """Path of the model used when none is named (:data:`~.model_files.DEFAULT_MODEL`).

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
        The estimated beat grid, with bar positions (beat and bar modes, and analyses made
        with ``labels=True``).
    chroma : np.ndarray, shape (n_rows, 12), or None
        Beat-synchronous chroma (analyses made with ``labels=True``, or with beats), for
        :meth:`labels`.
    chroma_times : np.ndarray, shape (n_rows,), or None
        Start time of each chroma row (s).
    beat_tracker : str
        The beat tracker of the analysis (``"package"`` or ``"madmom"``), whether or not
        its beats were needed.
    beat_tracker_version : str
        That tracker and its version, as estimation JAMS record it in the beat
        annotation's ``annotation_tools``: ``"package: beats.pt sha256:<16 hex>, decoder
        N"`` or ``"madmom <version>"`` ("" when unknown).
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
    chroma: Optional[np.ndarray] = None
    chroma_times: Optional[np.ndarray] = None
    beat_tracker: str = "package"
    beat_tracker_version: str = ""

    def ssm(self) -> np.ndarray:
        """Scaled cosine SSM of the embeddings, shape (T, T), values in [0, 1]."""
        e = torch.from_numpy(self.embeddings)
        return cosine_ssm(e).numpy()

    def labels(self, boundaries: Optional[np.ndarray] = None,
               threshold: Union[float, str, None] = None, similarity: Optional[str] = None
               ) -> np.ndarray:
        """Labels of the segments between ``boundaries`` (default: :attr:`boundaries`).

        Uses the embeddings, and the beat-synchronous chroma when the analysis has it
        (``labels=True``); ``threshold`` and ``similarity``: see
        :func:`labels.label_segments` (None: the defaults).

        Returns
        -------
        np.ndarray of int, shape (n_segments,)
            Numbered by first appearance.
        """
        from . import labels

        chroma = None if self.chroma is None else (self.chroma_times, self.chroma)
        return labels.label_segments(
            self.embeddings, self.patch_times,
            self.boundaries if boundaries is None else np.asarray(boundaries, dtype=float),
            threshold, similarity or labels.DEFAULT_SIMILARITY, chroma=chroma)


def _trivial(patches: Patches, source: str, why: str) -> Analysis:
    warnings.warn(f"{source}: {why}; returning a single segment [0, {patches.duration:.2f}] s",
                  ShortAudioWarning, stacklevel=3)
    n = len(patches)
    return Analysis(boundaries=np.array([0.0, patches.duration]), peaks=np.zeros(0, dtype=int),
                    patch_times=patches.times, novelty=np.zeros(n, dtype=np.float32),
                    embeddings=np.zeros((n, 128), dtype=np.float32),
                    duration=patches.duration, source=source)


def needs_beats(config: ModelConfig, sync: str, labels: bool) -> bool:
    """Whether an analysis needs the beats: beat and bar modes, labels (beat-synchronous
    chroma), beat-grid models."""
    return labels or sync != "frame" or config.patch_grid == "beat"


def front_end(y: np.ndarray, config: ModelConfig, sync: str, labels: bool,
              n_threads: int, beat_backend: str = "package",
              beat_audio: Optional[tuple[np.ndarray, int]] = None) -> Patches:
    """Patches of a mono signal at ``config.sample_rate``, with the log-mel kept where the
    package's beat tracker will need it, and the chroma for labels.

    With ``beat_backend="madmom"`` the beats are tracked here, from ``beat_audio``
    (``(signal, rate)``, the file decoded at madmom's rate; default ``y``), since madmom
    works on the audio, not on the log-mel.
    """
    beats_needed = needs_beats(config, sync, labels)
    patches = compute_patches(y, config, n_threads, keep_mel=beats_needed,
                              keep_chroma=labels)
    if beats_needed and beat_backend == "madmom":
        from .madmom_beats import shared_madmom_tracker

        patches.beats = shared_madmom_tracker().track(
            *(beat_audio or (y, config.sample_rate)))
    return patches


@dataclass(frozen=True)
class _AnalyzeTask:
    """What a CPU worker process of :meth:`Analyzer.analyze_many` does with a file."""

    analyzer: "Analyzer"
    labels: bool

    def __call__(self, path: str) -> Analysis:
        return self.analyzer.analyze(path, labels=self.labels)


@dataclass(frozen=True)
class _DecodeTask:
    """What a decoding worker process does for a GPU: decode and compute the patches (on
    the model's front-end grid; a beat-grid model's patches are recut in the calling
    process, where the tracker runs)."""

    config: ModelConfig
    sync: str
    labels: bool
    beat_backend: str = "package"

    def __call__(self, path: str) -> Patches:
        n_threads = torch.get_num_threads()
        return _file_patches(path, self.config, self.sync, self.labels, n_threads,
                             self.beat_backend)


def _file_patches(path: PathLike, config: ModelConfig, sync: str, labels: bool,
                  n_threads: int, beat_backend: str) -> Patches:
    """Decode ``path`` and compute its patches (and madmom's beats: the file decoded again
    at madmom's rate, 44.1 kHz, where the model's 22.05 kHz would cut its filters)."""
    y = load_audio(path, config.sample_rate, n_threads)
    beat_audio = None
    if beat_backend == "madmom" and needs_beats(config, sync, labels):
        from .madmom_beats import MADMOM_SAMPLE_RATE

        beat_audio = (load_audio(path, MADMOM_SAMPLE_RATE, n_threads), MADMOM_SAMPLE_RATE)
    return front_end(y, config, sync, labels, n_threads, beat_backend, beat_audio)


class Analyzer:
    """A loaded model that segments audio files.

    Parameters
    ----------
    model : str, os.PathLike, SSMNet or None
        A shipped model's name (:data:`~msaf_learned_ssm.model_files.NAMED_MODELS`;
        ``"default"`` and None mean :data:`~msaf_learned_ssm.model_files.DEFAULT_MODEL`,
        ``"author-nbatt3"``), a model file (this package's checkpoint or an author's
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
    beat_model : path-like, BeatTCN, "auto", "package" or "madmom", optional
        Beat tracker for the beat and bar modes and the labels: ``"auto"`` (the default,
        None) takes madmom's for the beat and bar modes when madmom is installed, else
        the package's (:func:`~msaf_learned_ssm.madmom_beats.resolve_beat_backend`);
        ``"package"``, the shipped tracker, or a tracker file or module of the package's
        kind; ``"madmom"``, madmom's RNN and DBN downbeat tracker
        (:mod:`msaf_learned_ssm.madmom_beats`; an optional install, its models licensed
        CC BY-NC-SA 4.0).
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
                 beat_model: Union[PathLike, "BeatTCN", str, None] = None,
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
            model_peaks, model_sync = PeakConfig(), "frame"
        else:
            path = default_model_path() if model in (None, "default") else resolve_model(model)
            self.model, self.meta = load_model(path, "cpu")
            model_peaks, model_sync = model_settings(self.meta, str(path))
            self.identity = {"name": model_name(path), "sha256": file_sha256(path)}
        self.model = self.model.to(self.device).eval()
        if self.device.type == "cpu":
            # Measured on 2 CPU cores (bench/speed.py, encoder stage of a 199 s track:
            # 0.42 s before, 0.12 s after): oneDNN's convolutions are much faster with
            # channels-last weights and batches of 16 patches that stay in cache than with
            # the default layout and 512 patches at once; outputs differ by < 1e-6
            # (tests/test_parity.py checks the Analyzer path too).
            self.model.encoder.use_cpu_layout(CPU_CONV_CHUNK)
        self.peaks = model_peaks if peaks is None else peaks
        self.sync = model_sync if sync is None else check_sync(sync)
        from .madmom_beats import BEAT_BACKENDS

        if beat_model is None or (isinstance(beat_model, str) and beat_model in BEAT_BACKENDS):
            #: The user's choice of tracker ("auto", "package" or "madmom").
            self.beat_choice, self._beat_model = beat_model or "auto", None
        else:  # a tracker file or module of the package's kind
            self.beat_choice, self._beat_model = "package", beat_model
        if self.beat_choice == "madmom":
            from .madmom_beats import import_madmom

            import_madmom()  # a missing install is said now, not at the first file
        self._tracker = None
        self._tracker_lock = threading.Lock()
        self._tracker_versions: dict = {}

    def __getstate__(self) -> dict:
        # For spawned worker processes: the lock cannot be pickled; the tracker is loaded
        # again where it is needed.
        state = self.__dict__.copy()
        state["_tracker"], state["_tracker_lock"] = None, None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._tracker_lock = threading.Lock()

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    def beat_backend_for(self, sync: Optional[str] = None) -> str:
        """The tracker that runs for placement ``sync`` (default ``self.sync``):
        ``"package"`` or ``"madmom"`` (``beat_choice`` with "auto" resolved)."""
        from .madmom_beats import resolve_beat_backend

        return resolve_beat_backend(self.beat_choice, check_sync(sync or self.sync))

    @property
    def beat_backend(self) -> str:
        """The tracker that runs at this Analyzer's own placement (:meth:`beat_backend_for`)."""
        return self.beat_backend_for()

    @property
    def beat_tracker_identity(self) -> dict:
        """What outputs record about the beat tracker at this Analyzer's own placement:
        ``name`` ("package" or "madmom") and its file's SHA-256 or madmom's version."""
        return self._tracker_identity(self.beat_backend)

    def _tracker_identity(self, backend: str) -> dict:
        if backend == "madmom":
            from .madmom_beats import madmom_version

            return {"name": "madmom", "version": madmom_version()}
        from .beats import DECODER_VERSION, package_tracker_identity

        model = self._beat_model
        if model is None or isinstance(model, (str, os.PathLike)):
            return package_tracker_identity(model)
        return {"name": "package", "file": "<in-memory tracker>", "sha256": None,
                "decoder": DECODER_VERSION}

    def beat_tracker_version(self, backend: str) -> str:
        """One line naming tracker ``backend`` ("package" or "madmom") and its version
        (:attr:`Analysis.beat_tracker_version`); hashed once per Analyzer."""
        if backend not in self._tracker_versions:
            identity = self._tracker_identity(backend)
            if backend == "madmom":
                line = f"madmom {identity['version']}"
            else:
                sha = identity["sha256"]
                line = (f"package: {identity['file']}"
                        + (f" sha256:{sha[:16]}" if sha else "")
                        + f", decoder {identity['decoder']}")
            self._tracker_versions[backend] = line
        return self._tracker_versions[backend]

    def _beats_of(self, patches: Patches, backend: str = "package") -> "Beats":
        """The track's beats: those tracked with its patches, else the package tracker's
        from the log-mel (``backend``: the tracker the analysis asked for)."""
        if patches.beats is not None:
            return patches.beats
        if backend == "madmom":
            raise ConfigError("the madmom beat tracker works on the audio: segment with "
                              "analyze, analyze_audio or analyze_many (patches from "
                              "compute_patches carry no audio)")
        if patches.mel is None:
            raise ConfigError("beat and bar modes, labels and beat-grid models need the "
                              "log-mel: compute the patches with compute_patches(..., "
                              "keep_mel=True)")
        return self.tracker.track_patches(patches)

    @property
    def tracker(self) -> "BeatTracker":
        """The package's beat tracker (loaded on first use), on this Analyzer's device."""
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
                sync: Optional[str] = None, labels: bool = False) -> Patches:
        """Decode ``path`` and compute its patches (CPU work, thread-safe).

        ``n_threads``: threads for decoding and the STFT; None follows
        ``torch.get_num_threads()``, so that one setting bounds all the CPU work.
        ``sync`` (default ``self.sync``): the log-mel is kept for the beat and bar modes.
        ``labels``: also the chroma, and the log-mel for the beats labels are synced to.
        """
        n_threads = n_threads or torch.get_num_threads()
        backend = self.beat_backend_for(sync)
        return self._on_model_grid(_file_patches(path, self.config,
                                                 check_sync(sync or self.sync), labels,
                                                 n_threads, backend), backend)

    def _patches_of(self, y: np.ndarray, n_threads: int, sync: Optional[str], labels: bool,
                    beat_audio: Optional[tuple[np.ndarray, int]] = None) -> Patches:
        backend = self.beat_backend_for(sync)
        patches = front_end(y, self.config, check_sync(sync or self.sync), labels, n_threads,
                            backend, beat_audio)
        return self._on_model_grid(patches, backend)

    def _backend_of(self, patches: Patches, sync: Optional[str]) -> str:
        """The tracker of an analysis of ``patches`` at placement ``sync``: patches
        computed without the audio (``compute_patches``) and without beats cannot go to
        madmom, so "auto" takes the package's tracker for them."""
        backend = self.beat_backend_for(sync)
        if backend == "madmom" and patches.beats is None and self.beat_choice == "auto":
            return "package"
        return backend

    def _on_model_grid(self, patches: Patches, backend: str = "package") -> Patches:
        """``patches`` centred where this model wants them: a beat-grid model's patches
        are recut on the tracker's beats (from ``patches.mel``; ``backend`` as in
        :meth:`_beats_of`)."""
        if self.config.patch_grid != "beat" or patches.grid == "beat":
            return patches
        if patches.mel is None:
            raise ConfigError(f"{self.identity['name']} is a beat-grid model: compute the "
                              "patches with compute_patches(..., keep_mel=True)")
        return to_beat_grid(patches, self._beats_of(patches, backend), self.config)

    def analyze_patches(self, patches: Patches, source: str = "<array>",
                        peaks: Optional[PeakConfig] = None, sync: Optional[str] = None
                        ) -> Analysis:
        """Segment a track from its patches (``peaks``, ``sync``: for this call only,
        default ``self.peaks``, ``self.sync``; beat and bar modes need ``patches.mel``).

        Tracks shorter than the novelty kernel (``config.kernel_size`` patches, about
        21 s with the defaults), or silent, give one segment and a :class:`ShortAudioWarning`.
        """
        return self.analyze_batch([(patches, source)], peaks, sync)[0]

    @torch.inference_mode()
    def analyze_batch(self, tracks: Sequence[tuple[Patches, str]],
                      peaks: Optional[PeakConfig] = None, sync: Optional[str] = None
                      ) -> list[Analysis]:
        """Segment several tracks, their convolutions in one forward pass.

        The same result as :meth:`analyze_patches` on each track; on a GPU, one larger
        batch keeps the device busier than many small ones (short tracks, many files).

        Parameters
        ----------
        tracks : sequence of (Patches, source)
        peaks, sync : as in :meth:`analyze_patches`

        Returns
        -------
        list of Analysis, in the order of ``tracks``

        Raises
        ------
        CheckpointError
            The model gives a non-finite novelty curve for one of the tracks (named).
        """
        backends = [self._backend_of(patches, sync) for patches, _ in tracks]
        tracks = [(self._on_model_grid(patches, backend), source)
                  for (patches, source), backend in zip(tracks, backends)]
        results: list[Optional[Analysis]] = [None] * len(tracks)
        todo = []
        for i, (patches, source) in enumerate(tracks):
            why = self._trivial_reason(patches)
            if why:
                results[i] = _trivial(patches, source, why)
                results[i].beat_tracker = backends[i]
                results[i].beat_tracker_version = self.beat_tracker_version(backends[i])
            else:
                todo.append(i)
        if todo:
            dtype = _AUTOCAST_DTYPES[self.precision]
            with torch.autocast(self.device.type, dtype=dtype or torch.float32,
                                enabled=dtype is not None):
                embeddings = self.model.encoder.forward_tracks(
                    [torch.from_numpy(tracks[i][0].data).to(self.device) for i in todo])
                novelties = [self.model.novelty(e) for e in embeddings]
            for i, emb, novelty in zip(todo, embeddings, novelties):
                results[i] = self._finish(tracks[i][0], tracks[i][1], emb, novelty, peaks, sync,
                                          backends[i])
        return results

    def _trivial_reason(self, patches: Patches) -> str:
        """Why a track gets one segment without the model ("" when it does not)."""
        n = len(patches)
        if n == 0:
            return "audio shorter than one patch"
        if n < self.model.novelty.size:
            return (f"audio shorter than the novelty kernel "
                    f"({n} < {self.model.novelty.size} patches)")
        if not np.any(patches.data):
            return "audio is silent (constant features)"
        return ""

    def _finish(self, patches: Patches, source: str, embeddings: torch.Tensor,
                novelty: torch.Tensor, peaks: Optional[PeakConfig], sync: Optional[str],
                backend: str) -> Analysis:
        """Boundaries, beats and chroma of one track from the model's outputs (``backend``:
        the beat tracker of the analysis, :meth:`_backend_of`)."""
        novelty_np = novelty.float().cpu().numpy()
        if not np.all(np.isfinite(novelty_np)):
            raise CheckpointError(f"{self.identity['name']}: the model gives a "
                                  f"non-finite novelty curve for {source}")
        found, boundaries = novelty_to_boundaries(novelty_np, patches.times, patches.duration,
                                                  self.config.grid_hop_sec(patches.times),
                                                  peaks or self.peaks)
        sync = check_sync(sync or self.sync)
        beats, chroma, chroma_times = patches.beats, None, None
        if sync != "frame" or patches.chroma is not None:
            beats = self._beats_of(patches, backend)
            boundaries = sync_boundaries(boundaries, beats, sync)
        if patches.chroma is not None:
            chroma_times, chroma = beat_chroma(
                patches.chroma, self.config.hop_length / self.config.sample_rate, beats.times)
        return Analysis(boundaries=boundaries,
                        peaks=found, patch_times=patches.times, novelty=novelty_np,
                        embeddings=embeddings.float().cpu().numpy(),
                        duration=patches.duration, source=source, sync=sync, beats=beats,
                        chroma=chroma, chroma_times=chroma_times,
                        beat_tracker=backend,
                        beat_tracker_version=self.beat_tracker_version(backend))

    def analyze_audio(self, y: np.ndarray, sample_rate: Optional[int] = None,
                      labels: bool = False) -> Analysis:
        """Segment a mono signal (resampled when ``sample_rate`` differs from the model's;
        ``labels``: as in :meth:`analyze`).

        ``y``: float samples, or integer PCM (scaled to [-1, 1) as soundfile reads it).
        ``sample_rate``: a whole number of Hz; None means the model's rate.

        Raises
        ------
        ConfigError
            ``y`` is not 1-D, empty, not finite, not numeric; ``sample_rate`` is not a
            positive whole number of Hz (0, negative, fractional...).
        """
        y = as_float_signal(y)
        if y.ndim != 1 or not np.all(np.isfinite(y)):
            raise ConfigError("audio must be a 1-D array of finite samples")
        if y.size == 0:
            # An empty signal has no duration to segment (a file's 0 samples: AudioLoadError).
            raise ConfigError("audio holds no samples")
        sr = (self.config.sample_rate if sample_rate is None
              else check_sample_rate(sample_rate))
        beat_audio = (y, sr)
        if sr != self.config.sample_rate:
            y = resample(y, sr, self.config.sample_rate)
        return self.analyze_patches(self._patches_of(y, torch.get_num_threads(), None, labels,
                                                     beat_audio))

    def analyze(self, path: PathLike, peaks: Optional[PeakConfig] = None,
                sync: Optional[str] = None, labels: bool = False) -> Analysis:
        """Segment one audio file (``peaks``, ``sync``: for this call only, default
        ``self.peaks``, ``self.sync``; a shared Analyzer is never modified).

        ``labels``: also compute the beats and beat-synchronous chroma that
        :meth:`Analysis.labels` uses beside the embeddings (a little more work).

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
        checked = as_path(path)  # ConfigError for a path of another type
        source = os.fsdecode(path) if isinstance(path, bytes) else str(path)
        return self.analyze_patches(self.patches(checked, sync=sync, labels=labels), source,
                                    peaks, sync)

    def default_prefetch(self) -> int:
        """Files :meth:`analyze_many` decodes ahead by default: with a GPU, one per
        thread (at least 2), since the GPU then waits on decoding and the STFT (16-core
        H100 machine, three-minute MP3s: 16 files ahead gave 23.9 files per second, 8 gave
        15.3; 22.05 kHz FLAC, earlier: 8 gave 37, 2 gave 25;
        ``bench/results/speed_gpu.md``); on a CPU with spare cores (cores beyond
        ``torch.get_num_threads()``) 2; else 0."""
        if self.device.type != "cpu":
            return max(2, torch.get_num_threads())
        return 2 if default_threads() > torch.get_num_threads() else 0

    def analyze_many(self, paths: Iterable[PathLike], prefetch: Optional[int] = None,
                     labels: bool = False, batch_tracks: int = 1,
                     workers: Optional[int] = None
                     ) -> Iterator[tuple[str, Union[Analysis, LearnedSSMError]]]:
        """Segment many files with the model loaded once.

        Yields ``(path, Analysis)``, or ``(path, error)`` for a file that failed, so one bad
        file does not stop a batch; in the order of ``paths``.

        Parameters
        ----------
        paths : iterable of path-like
        prefetch : int >= 0 or None
            With ``workers=1``: files decoded ahead in background threads, overlapping with
            the model. None: :meth:`default_prefetch` (one per thread with a GPU; 2 when
            the CPU has cores that torch does not use; else 0). On a CPU whose cores all
            run the encoder, decoding ahead only competes with it and the batch is slower
            (``bench/results/speed.md``, batch rows). Unused with worker processes.
        labels : bool
            As in :meth:`analyze`.
        batch_tracks : int >= 1
            Files whose convolutions share one forward pass (:meth:`analyze_batch`): for
            GPUs; on a CPU, 1 (larger batches leave the caches and gain nothing).
        workers : int >= 1 or None
            Worker processes (:mod:`msaf_learned_ssm.workers`), each with
            ``cores // workers`` threads. On a CPU each process segments whole files;
            with a GPU they decode and compute the patches while the model runs here.
            1: everything in this process. None: on a CPU,
            :func:`~msaf_learned_ssm.parallel.default_workers` (one process per core,
            no more than the files, and 1 below ``parallel.WORKERS_MIN_FILES`` files;
            measured in ``bench/results/speed.md``); with a
            GPU, 1 (decoding threads, see ``prefetch``).

        Raises
        ------
        ConfigError
            ``batch_tracks``, ``prefetch`` or ``workers`` out of range.
        """
        if not isinstance(batch_tracks, int) or batch_tracks < 1:
            raise ConfigError(f"batch_tracks must be an integer >= 1, got {batch_tracks!r}")
        if prefetch is not None and (not isinstance(prefetch, int) or prefetch < 0):
            raise ConfigError(f"prefetch must be an integer >= 0, got {prefetch!r}")
        paths = [os.fsdecode(p) if isinstance(p, bytes) else str(p) for p in paths]
        workers = self._worker_count(workers, len(paths))
        if workers > 1 and needs_beats(self.config, self.sync, labels):
            # Loaded once here, before the workers fork, rather than once per worker.
            if self.beat_backend == "madmom":
                from .madmom_beats import shared_madmom_tracker

                shared_madmom_tracker()
            elif self.device.type == "cpu":
                self.tracker
        if workers > 1 and self.device.type == "cpu":
            yield from map_in_processes(_AnalyzeTask(self, labels), paths, workers,
                                        worker_threads(workers))
            return
        if workers > 1:
            decoded = map_in_processes(_DecodeTask(self.config, self.sync, labels,
                                                   self.beat_backend),
                                       paths, workers, worker_threads(workers))
        else:
            decoded = self._decode_all(paths, self.default_prefetch() if prefetch is None
                                       else prefetch, labels)
        pending: list[tuple[Patches, str]] = []
        for path, patches in decoded:
            if isinstance(patches, LearnedSSMError):
                # The files decoded before it come out first: results stay in order.
                yield from self._analyze_pending(pending)
                pending = []
                yield path, patches
                continue
            pending.append((patches, path))
            if len(pending) >= batch_tracks:
                yield from self._analyze_pending(pending)
                pending = []
        yield from self._analyze_pending(pending)

    def _worker_count(self, workers: Optional[int], n_files: int) -> int:
        """The processes :meth:`analyze_many` runs: ``workers`` (checked), else the default
        (:func:`~msaf_learned_ssm.parallel.default_workers` on a CPU, 1 with a GPU); never
        more than the files, nor than the available memory holds (with a warning).

        Raises
        ------
        ConfigError
            ``workers`` is not an integer >= 1, or asks for processes in a daemonic
            process (a ``multiprocessing.Pool`` worker), which cannot start them.
        """
        if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool)
                                    or workers < 1):
            raise ConfigError(f"workers must be an integer >= 1, got {workers!r}")
        if workers is None:  # the default already keeps to the files, memory and daemons
            return default_workers(n_files) if self.device.type == "cpu" else 1
        workers = min(workers, max(1, n_files))
        if workers == 1:
            return 1
        held = memory_cap(workers)
        if held < workers:
            warnings.warn(f"workers={workers}: the available memory holds {held} worker "
                          f"processes (about {WORKER_MEMORY_BYTES / 2 ** 30:.0f} GiB each); "
                          f"using {held}", UserWarning, stacklevel=3)
            workers = held
        import multiprocessing

        if workers > 1 and multiprocessing.current_process().daemon:
            raise ConfigError(f"workers={workers}: this is a daemonic process (a "
                              "multiprocessing.Pool worker, say), which cannot start "
                              "worker processes; use workers=1 or None here")
        return workers

    def _decode_all(self, paths: list[str], prefetch: int, labels: bool
                    ) -> Iterator[tuple[str, Union[Patches, LearnedSSMError]]]:
        """``(path, Patches or error)`` in order, ``prefetch`` files decoded ahead."""
        if prefetch < 1:
            for path in paths:
                try:
                    yield path, self.patches(path, labels=labels)
                except LearnedSSMError as exc:
                    yield path, exc
            return
        # With a GPU the cores are free for decoding and are shared among the files decoded
        # at once (a file's decoding and STFT run in parallel parts; one thread per file
        # left cores idle on a 16-core GPU machine, bench/results/speed_gpu.md). On a CPU
        # the encoder uses torch's threads, so each file decodes on one spare core.
        threads_per_file = (max(1, torch.get_num_threads() // prefetch)
                            if self.device.type != "cpu" else 1)
        with ThreadPoolExecutor(max_workers=prefetch) as pool:
            def decode(p: str) -> Patches:
                return self.patches(p, threads_per_file, labels=labels)

            futures = [pool.submit(decode, p) for p in paths[:prefetch]]
            for i, path in enumerate(paths):
                if i + prefetch < len(paths):
                    futures.append(pool.submit(decode, paths[i + prefetch]))
                try:
                    yield path, futures[i].result()
                except LearnedSSMError as exc:
                    yield path, exc
                futures[i] = None  # free the patches of finished files

    def _analyze_pending(self, pending: list[tuple[Patches, str]]
                         ) -> Iterator[tuple[str, Union[Analysis, LearnedSSMError]]]:
        """Analyses of decoded files; a batch that fails is redone file by file, so that
        the error is reported for the file that caused it only."""
        try:
            results = self.analyze_batch(pending)
        except LearnedSSMError as exc:
            results = [exc] if len(pending) == 1 else [self._analyze_one(*p) for p in pending]
        yield from ((source, result) for (_, source), result in zip(pending, results))

    def _analyze_one(self, patches: Patches, source: str
                     ) -> Union[Analysis, LearnedSSMError]:
        try:
            return self.analyze_patches(patches, source)
        except LearnedSSMError as exc:
            return exc


_SHARED_LOCK = threading.Lock()
_SHARED: dict = {}


def shared_analyzer(model: Union[str, os.PathLike, None] = "default",
                    device: Union[str, torch.device] = "auto",
                    beats: Optional[str] = None) -> Analyzer:
    """An :class:`Analyzer` for (model, device, beat tracker) loaded once per process and
    then reused (``beats``: "auto", the default, "package" or "madmom"; see
    :class:`Analyzer`'s ``beat_model``).

    For workers that segment many files one call at a time (MSAF's batch workers, Dask
    workers): the model is loaded once, not per file.
    """
    from .madmom_beats import check_beat_backend

    backend = check_beat_backend(beats)
    key = (str(model if model is not None else "default"), str(device), backend)
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = Analyzer(model, device, beat_model=backend)
        return _SHARED[key]
