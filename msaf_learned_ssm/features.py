"""Feature front-end: audio to the model's log-mel patches, with the time of every patch.

Follows the author's release exactly (see ``../shared/data/README.md``): mel spectrogram
(80 bands, fmax 8 kHz, n_fft 2048, hop 512), ``log(1 + 100 mel)``, each band standardised
over the track, frames averaged in groups of 4 (about 0.093 s), patches of 40 steps every
5 steps (about 0.464 s).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Optional

import numpy as np

from .config import ModelConfig
from .parallel import resolve_threads

if TYPE_CHECKING:
    from .beats import Beats


@dataclass
class Patches:
    """Model input for one track.

    Attributes
    ----------
    data : np.ndarray, shape (n_patches, n_mels, patch_steps), float32
        Standardised log-mel patches.
    times : np.ndarray, shape (n_patches,), float64
        Time of each patch's centre (s).
    duration : float
        Duration of the audio (s).
    mel : np.ndarray, shape (n_mels, n_frames), optional
        The standardised log-mel the patches were cut from, kept when a beat tracker will
        read it too (:func:`compute_patches` with ``keep_mel=True``).
    chroma : np.ndarray, shape (n_frames, 12), optional
        Chroma of the same STFT frames, each frame scaled to a maximum of 1, for segment
        labels and for the beat tracker's bar decoder (:func:`compute_patches` with
        ``keep_chroma=True`` or ``keep_mel=True``).
    grid : {"frame", "beat"}
        Where the patches are centred (:attr:`ModelConfig.patch_grid`).
    beats : Beats, optional
        The beat grid the patches were centred on (``grid="beat"``), or that a caller
        tracked already: not tracked twice.
    """

    data: np.ndarray
    times: np.ndarray
    duration: float
    mel: Optional[np.ndarray] = None
    chroma: Optional[np.ndarray] = None
    grid: str = "frame"
    beats: Optional["Beats"] = None

    def __len__(self) -> int:
        return int(self.data.shape[0])


#: Frames per block of the short-time Fourier transform in :func:`log_mel`: a block's
#: windowed frames (4 MB) stay in cache, and blocks run in parallel threads.
STFT_BLOCK_FRAMES = 512


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, ``htk=False``): linear below 1 kHz, log above."""
    hz = np.asarray(hz, dtype=float)
    mel = hz / (200.0 / 3)
    log_region = hz >= 1000.0
    return np.where(log_region, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0)
                    / (np.log(6.4) / 27.0), mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=float)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)),
                    (200.0 / 3) * mel)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmax: float,
                   fmin: float = 0.0) -> np.ndarray:
    """Triangular mel filters with Slaney's area normalisation, float32.

    The same matrix as ``librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels,
    fmin=fmin, fmax=fmax)`` (``tests/test_front_end.py``), computed here without importing
    librosa, whose numba kernels take over a second to compile in a fresh process.

    Returns
    -------
    np.ndarray, shape (n_mels, 1 + n_fft // 2)
    """
    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


def chroma_filterbank(sample_rate: int, n_fft: int, n_chroma: int = 12,
                      centre_octave: float = 5.0, octave_width: float = 2.0) -> np.ndarray:
    """Chroma filters of the FFT bins (tuning 0, pitch classes from C), float32.

    The same matrix as ``librosa.filters.chroma(sr=sample_rate, n_fft=n_fft,
    n_chroma=n_chroma, tuning=0.0)`` (``tests/test_front_end.py``), without importing
    librosa (see :func:`mel_filterbank`): each bin spreads a Gaussian over the pitch
    classes near its frequency, columns have unit L2 norm, then a Gaussian over octaves
    centred on ``centre_octave`` (C5 at 523 Hz, ``octave_width`` octaves wide) weighs them.

    Returns
    -------
    np.ndarray, shape (n_chroma, 1 + n_fft // 2)
    """
    frequencies = np.linspace(0, sample_rate, n_fft, endpoint=False)[1:]
    # Octaves above A0 (27.5 Hz), in chroma bins.
    bins = n_chroma * np.log2(frequencies / (440.0 / 16))
    bins = np.concatenate(([bins[0] - 1.5 * n_chroma], bins))
    widths = np.concatenate((np.maximum(bins[1:] - bins[:-1], 1.0), [1.0]))
    distance = np.subtract.outer(bins, np.arange(n_chroma, dtype=float)).T
    half = np.round(n_chroma / 2.0)
    distance = np.remainder(distance + half + 10 * n_chroma, n_chroma) - half
    weights = np.exp(-0.5 * (2 * distance / widths[None, :]) ** 2)
    norms = np.sqrt((weights ** 2).sum(axis=0, keepdims=True))
    weights /= np.where(norms < np.finfo(np.float32).tiny, 1.0, norms)
    weights *= np.exp(-0.5 * ((bins / n_chroma - centre_octave) / octave_width) ** 2)[None, :]
    weights = np.roll(weights, -3 * (n_chroma // 12), axis=0)  # start at C, not A
    return np.ascontiguousarray(weights[:, : 1 + n_fft // 2], dtype=np.float32)


def sync_frames(frames: np.ndarray, edges: np.ndarray, aggregate=np.mean) -> np.ndarray:
    """Frames aggregated between consecutive edges (``librosa.util.sync`` on rows).

    Parameters
    ----------
    frames : np.ndarray, shape (n_frames, d)
    edges : np.ndarray of int, shape (n_edges,)
        Strictly increasing frame indices in ``[0, n_frames]``; row ``k`` of the result
        covers frames ``edges[k]`` to ``edges[k + 1] - 1``.
    aggregate : callable
        ``np.mean``, ``np.median``... taking ``axis``.

    Returns
    -------
    np.ndarray, shape (n_edges - 1, d)
    """
    if len(edges) < 2:
        return frames[:0]
    return np.stack([aggregate(frames[a:b], axis=0) for a, b in zip(edges[:-1], edges[1:])])


def periodic_hann(n: int) -> np.ndarray:
    """Periodic Hann window of ``n`` samples (``scipy.signal.get_window("hann", n)``)."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _mel_filters(sample_rate: int, n_fft: int, n_mels: int, fmax: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Periodic Hann window (n_fft,) and the mel filters, float32.

    The filters are returned as (2 * n_bins, n_mels) with each row repeated twice and the
    bins above the last non-zero one dropped, so that the squared real and imaginary
    parts of the used FFT bins (:func:`_interleaved_spectrum`) project straight to mel
    power in one matrix product.
    """
    basis = mel_filterbank(sample_rate, n_fft, n_mels, fmax)
    n_bins = int(np.flatnonzero(basis.any(axis=0)).max()) + 1
    window = periodic_hann(n_fft)
    projection = np.ascontiguousarray(np.repeat(basis[:, :n_bins], 2, axis=1).T,
                                      dtype=np.float32)
    window.setflags(write=False)  # shared by every call (lru_cache)
    projection.setflags(write=False)
    return window, projection


def log_mel(y: np.ndarray, config: ModelConfig, n_threads: Optional[int] = None
            ) -> np.ndarray:
    """Log-compressed mel spectrogram ``log(1 + gamma * mel)``.

    Equals :func:`log_mel_librosa` (``librosa.feature.melspectrogram`` with a centred,
    zero-padded, periodic-Hann STFT and power 2) within float32 rounding (about 1e-6,
    ``tests/test_front_end.py``), and is over three times faster on 2 cores (features
    stage in ``bench/results/speed.md``): the STFT runs in float32, in cache-sized blocks
    spread over ``n_threads`` threads, and only up to the last FFT bin the mel filters
    use (``fmax``).

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
        Mono audio at ``config.sample_rate``.
    config : ModelConfig
    n_threads : int > 0 or None
        Threads for the STFT blocks (None: the cores this process may use).

    Returns
    -------
    np.ndarray, shape (n_mels, n_frames), float32
        ``n_frames = 1 + n_samples // hop_length``.
    """
    return log_mel_and_chroma(y, config, n_threads, chroma=False)[0]


def log_mel_and_chroma(y: np.ndarray, config: ModelConfig, n_threads: Optional[int] = None,
                       chroma: bool = True) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """:func:`log_mel` and, from the same STFT, a chroma (the 12 pitch classes).

    The chroma is ``librosa.feature.chroma_stft`` with ``tuning=0`` restricted to the FFT
    bins below ``fmax`` (librosa's chroma filters weigh higher bins little): 12 more
    columns in the one projection, so it costs next to nothing beside the log-mel.

    Returns
    -------
    mel : np.ndarray, shape (n_mels, n_frames), float32
    chroma : np.ndarray, shape (n_frames, 12), float32, or None when ``chroma=False``
        Each frame scaled to a maximum of 1 (silent frames stay 0).
    """
    y = np.asarray(y, dtype=np.float32)
    window, projection = _mel_filters(config.sample_rate, config.n_fft, config.n_mels,
                                      float(config.fmax))
    pitch_projection = (_chroma_filters(config.sample_rate, config.n_fft,
                                        projection.shape[0]) if chroma else None)
    n_fft, hop = config.n_fft, config.hop_length
    n_frames = 1 + len(y) // hop
    mel = np.empty((n_frames, config.n_mels), dtype=np.float32)
    pitch = (np.empty((n_frames, pitch_projection.shape[1]), dtype=np.float32) if chroma
             else None)

    def project_block(first: int) -> None:
        count = min(STFT_BLOCK_FRAMES, n_frames - first)
        frames = _centred_frames(y, first, count, n_fft, hop)
        power = np.square(_interleaved_spectrum(frames, window, projection.shape[0]))
        # Two products, not one wider one: the log-mel stays bit-identical with or
        # without the chroma.
        np.matmul(power, projection, out=mel[first: first + count])
        if pitch is not None:
            np.matmul(power, pitch_projection, out=pitch[first: first + count])

    firsts = range(0, n_frames, STFT_BLOCK_FRAMES)
    n_threads = min(resolve_threads(n_threads), len(firsts))
    # One BLAS thread per block: OpenBLAS's own threads would otherwise keep spinning
    # after the products and slow the encoder that runs next (0.085 s -> up to 0.19 s
    # for a 200 s track on 2 cores, measured).
    with _one_blas_thread():
        if n_threads > 1:
            # numpy and scipy.fft release the GIL: the blocks run in parallel.
            with ThreadPoolExecutor(n_threads) as pool:
                list(pool.map(project_block, firsts))
        else:
            for first in firsts:
                project_block(first)
    mel *= config.log_gamma
    mel = np.log1p(mel, out=mel).T
    if pitch is not None:
        peak = pitch.max(axis=1, keepdims=True)
        pitch /= np.where(peak > 0, peak, 1.0)
    return mel, pitch


@functools.lru_cache(maxsize=8)
def _chroma_filters(sample_rate: int, n_fft: int, n_values: int) -> np.ndarray:
    """:func:`chroma_filterbank` as a (n_values, 12) projection of the squared interleaved
    spectrum (:func:`_mel_filters`), for the bins the log-mel uses."""
    basis = chroma_filterbank(sample_rate, n_fft)[:, :n_values // 2]
    projection = np.ascontiguousarray(np.repeat(basis, 2, axis=1).T, dtype=np.float32)
    projection.setflags(write=False)
    return projection


@functools.lru_cache(maxsize=1)
def _blas_controller():
    """threadpoolctl's view of the loaded BLAS libraries (inspected once: 1.5 ms)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


_BLAS_LOCK = threading.Lock()
_BLAS_USERS = 0
_BLAS_LIMITER = None


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """BLAS limited to one thread while any caller is inside (nested and concurrent uses
    share one limit, restored when the last leaves).

    The limit is process-wide: with a plain ``limit()`` per call, two threads computing
    features at once (``analyze_many``'s decoding ahead, the trainer's data threads) could
    restore it under each other, and OpenBLAS with 2 threads gives mel values up to 1e-6
    apart from 1 thread: results would then depend on timing. (Even limited to one
    thread, OpenBLAS's products differ in the last bits between the main thread and other
    threads, measured: features computed on other threads are reproducible among
    themselves, not bit-identical to the main thread's.)
    """
    global _BLAS_USERS, _BLAS_LIMITER
    with _BLAS_LOCK:
        if _BLAS_USERS == 0:
            _BLAS_LIMITER = _blas_controller().limit(limits=1, user_api="blas")
        _BLAS_USERS += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_USERS -= 1
            if _BLAS_USERS == 0:
                _BLAS_LIMITER.restore_original_limits()
                _BLAS_LIMITER = None


def _centred_frames(y: np.ndarray, first: int, count: int, n_fft: int, hop: int
                    ) -> np.ndarray:
    """Frames ``first ... first + count - 1`` of a centred STFT with zero padding.

    Frame t covers samples ``t * hop - n_fft // 2`` to ``t * hop + n_fft // 2`` (zeros
    outside the signal, librosa's ``pad_mode="constant"``). Only this block's samples are
    copied: padding the whole signal would copy it all (17 MB for 200 s) on every call.

    Returns
    -------
    np.ndarray, shape (count, n_fft), a read-only view of a new buffer
    """
    start = first * hop - n_fft // 2
    stop = (first + count - 1) * hop - n_fft // 2 + n_fft
    buffer = np.zeros(stop - start, dtype=np.float32)
    lo, hi = max(start, 0), min(stop, len(y))
    if hi > lo:
        buffer[lo - start: hi - start] = y[lo:hi]
    return np.lib.stride_tricks.sliding_window_view(buffer, n_fft)[::hop]


def _interleaved_spectrum(frames: np.ndarray, window: np.ndarray, n_values: int
                          ) -> np.ndarray:
    """Windowed rfft of each frame as interleaved floats (re, im, re, im...), first
    ``n_values`` floats (the bins the mel filters use): (n, n_fft) -> (n, n_values)."""
    import scipy.fft

    spectrum = scipy.fft.rfft(frames * window, axis=1)  # complex64 for float32 frames
    return spectrum.view(np.float32)[:, :n_values]


def log_mel_librosa(y: np.ndarray, config: ModelConfig) -> np.ndarray:
    """:func:`log_mel` computed as the author's release does, with librosa.

    The reference :func:`log_mel` is tested against, and the front-end of the author's
    pipeline in ``bench/speed.py``.

    Returns
    -------
    np.ndarray, shape (n_mels, n_frames), float32
    """
    import librosa

    mel = librosa.feature.melspectrogram(
        y=y, sr=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
        n_mels=config.n_mels, fmax=config.fmax)
    return np.log1p(config.log_gamma * mel).astype(np.float32, copy=False)


def standardize_bands(features: np.ndarray) -> np.ndarray:
    """Standardise each row (band) to zero mean and unit variance over time.

    Parameters
    ----------
    features : np.ndarray, shape (n_bands, n_frames)

    Returns
    -------
    np.ndarray, same shape and dtype. A constant band becomes all zeros.
    """
    centred = features - features.mean(axis=1, keepdims=True)
    # float64 eps as the author: keeps silent (constant) bands finite.
    return centred / (centred.std(axis=1, keepdims=True) + np.finfo(float).eps)


def average_steps(features: np.ndarray, frames_per_step: int, frame_sec: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Average consecutive frames in non-overlapping groups of ``frames_per_step``.

    Groups start at frames 0, g, 2g, ...; the last group is used only when the next group
    starts inside the track (as ``librosa.util.sync(..., pad=False)``).

    Parameters
    ----------
    features : np.ndarray, shape (n_bands, n_frames)
    frames_per_step : int > 0
    frame_sec : float
        Hop between frames (s).

    Returns
    -------
    steps : np.ndarray, shape (n_bands, n_steps)
    step_times : np.ndarray, shape (n_steps,)
        Mean of the start time of each group and of the next group (s).
    """
    n_frames = features.shape[1]
    n_starts = -(-n_frames // frames_per_step)  # group starts 0, g, 2g... below n_frames
    n_steps = max(n_starts - 1, 0)
    steps = features[:, :n_steps * frames_per_step]
    steps = steps.reshape(features.shape[0], n_steps, frames_per_step).mean(axis=2)
    starts = np.arange(n_steps + 1) * frames_per_step * frame_sec
    step_times = 0.5 * (starts[:-1] + starts[1:])
    return steps, step_times


def extract_patches(steps: np.ndarray, step_times: np.ndarray, half_steps: int, hop_steps: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Cut overlapping patches of ``2 * half_steps`` steps, centred every ``hop_steps``.

    Centres are ``half_steps, half_steps + hop_steps, ...`` while ``centre + half_steps <
    n_steps`` (the author's rule, which leaves the last step out).

    Parameters
    ----------
    steps : np.ndarray, shape (n_bands, n_steps)
    step_times : np.ndarray, shape (n_steps,)

    Returns
    -------
    patches : np.ndarray, shape (n_patches, n_bands, 2 * half_steps)
    times : np.ndarray, shape (n_patches,)
        Time of each patch's centre step (s).
    """
    n_bands, n_steps = steps.shape
    width = 2 * half_steps
    n_patches = max(0, -(-(n_steps - width) // hop_steps)) if n_steps > width else 0
    if n_patches == 0:
        return np.zeros((0, n_bands, width), dtype=steps.dtype), np.zeros(0)
    windows = np.lib.stride_tricks.sliding_window_view(steps, width, axis=1)
    patches = windows[:, : (n_patches - 1) * hop_steps + 1 : hop_steps]  # (bands, n, width)
    centres = half_steps + hop_steps * np.arange(n_patches)
    return np.ascontiguousarray(patches.transpose(1, 0, 2)), step_times[centres]


def beat_centres(times: np.ndarray, positions: np.ndarray, target_sec: float) -> np.ndarray:
    """Beat times at the metrical level whose period is nearest ``target_sec``.

    A tracker may lock on half or double the tempo a listener would tap; patches one
    ``target_sec`` apart keep the novelty kernels (counted in patches) spanning about the
    same duration on every track. The beats are kept as they are, every other one is
    kept (odd bar positions: downbeats stay), or a centre is added half-way between
    consecutive beats, whichever gives the median period nearest ``target_sec`` in ratio.

    Parameters
    ----------
    times : np.ndarray, shape (n_beats,)
        Increasing beat times (s).
    positions : np.ndarray of int, shape (n_beats,)
        Position of each beat in its bar (1 = downbeat).
    target_sec : float > 0

    Returns
    -------
    np.ndarray, shape (n_centres,)
        Increasing times (s); ``times`` unchanged when it has fewer than 2 beats.
    """
    times = np.asarray(times, dtype=float)
    if len(times) < 2:
        return times
    level = int(np.clip(np.round(np.log2(target_sec / np.median(np.diff(times)))), -1, 1))
    if level == 1:
        odd = np.asarray(positions) % 2 == 1
        return times[odd] if odd.sum() >= 2 else times[::2]
    if level == -1:
        middles = 0.5 * (times[:-1] + times[1:])
        return np.sort(np.concatenate([times, middles]))
    return times


def patches_at(steps: np.ndarray, step_times: np.ndarray, centres: np.ndarray,
               half_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Patches of ``2 * half_steps`` steps centred on the steps nearest ``centres``.

    As in :func:`extract_patches`, a patch must lie inside the track (centre step
    ``>= half_steps`` and ``centre + half_steps < n_steps``); centres outside, and a
    centre whose nearest step is already taken, are dropped.

    Parameters
    ----------
    steps : np.ndarray, shape (n_bands, n_steps)
    step_times : np.ndarray, shape (n_steps,)
        Evenly spaced step times (s).
    centres : np.ndarray, shape (n,)
        Increasing wanted centre times (s).
    half_steps : int

    Returns
    -------
    patches : np.ndarray, shape (n_patches, n_bands, 2 * half_steps)
    times : np.ndarray, shape (n_patches,)
        The centre times kept (s): the wanted times, not their steps' times.
    """
    n_bands, n_steps = steps.shape
    width = 2 * half_steps
    centres = np.asarray(centres, dtype=float)
    if n_steps <= width or len(centres) == 0 or len(step_times) < 2:
        return np.zeros((0, n_bands, width), dtype=steps.dtype), np.zeros(0)
    step = step_times[1] - step_times[0]
    index = np.round((centres - step_times[0]) / step).astype(int)
    keep = (index >= half_steps) & (index + half_steps < n_steps)
    keep[1:] &= np.diff(index) > 0
    index, centres = index[keep], centres[keep]
    windows = np.lib.stride_tricks.sliding_window_view(steps, width, axis=1)
    patches = windows[:, index - half_steps]  # (bands, n, width)
    return np.ascontiguousarray(patches.transpose(1, 0, 2)), centres


def compute_steps(y: np.ndarray, config: ModelConfig, n_threads: Optional[int] = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Standardised log-mel averaged into steps (the part worth caching for training).

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
        Mono audio at ``config.sample_rate``.
    config : ModelConfig
    n_threads : int > 0 or None
        Threads for the STFT (None: the cores this process may use).

    Returns
    -------
    steps : np.ndarray, shape (n_mels, n_steps), float32
    step_times : np.ndarray, shape (n_steps,)
        Time of each step (s).
    """
    return steps_from_mel(standardize_bands(log_mel(y, config, n_threads)), config)


def steps_from_mel(mel: np.ndarray, config: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """:func:`compute_steps` from a standardised log-mel, shape (n_mels, n_frames)."""
    steps, step_times = average_steps(mel, config.frames_per_step, config.frame_sec)
    return steps.astype(np.float32, copy=False), step_times


def patches_from_steps(steps: np.ndarray, step_times: np.ndarray, duration: float,
                       config: ModelConfig, beats: Optional["Beats"] = None) -> Patches:
    """Cut the model's patches out of :func:`compute_steps`' output.

    ``beats`` (a :class:`~msaf_learned_ssm.beats.Beats`): with a beat-grid model
    (``config.patch_grid == "beat"``), the patches are centred on them
    (:func:`beat_centres`, :func:`patches_at`); a grid of fewer than 2 beats (silence,
    no pulse) falls back to the frame grid, so that the track is still segmented.
    """
    if config.patch_grid == "beat" and beats is not None and len(beats.times) >= 2:
        centres = beat_centres(beats.times, beats.positions, config.patch_hop_sec)
        data, times = patches_at(steps, step_times, centres, config.patch_half_steps)
        return Patches(data.astype(np.float32, copy=False), times, duration, grid="beat",
                       beats=beats)
    data, times = extract_patches(steps, step_times, config.patch_half_steps,
                                  config.patch_hop_steps)
    return Patches(data.astype(np.float32, copy=False), times, duration, beats=beats)


def to_beat_grid(patches: Patches, beats: "Beats", config: ModelConfig) -> Patches:
    """The same track's patches centred on ``beats`` (:func:`patches_from_steps`), cut
    from ``patches.mel``; the log-mel and chroma are carried over."""
    if patches.mel is None:
        raise ValueError("a beat grid is cut from the log-mel: compute the patches with "
                         "keep_mel=True")
    steps, step_times = steps_from_mel(patches.mel, config)
    out = patches_from_steps(steps, step_times, patches.duration, config, beats)
    out.mel, out.chroma = patches.mel, patches.chroma
    return out


def compute_patches(y: np.ndarray, config: ModelConfig, n_threads: Optional[int] = None,
                    keep_mel: bool = False, keep_chroma: bool = False) -> Patches:
    """Full front-end: mono audio to standardised log-mel patches and their times.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
        Mono audio at ``config.sample_rate``.
    config : ModelConfig
    n_threads : int > 0 or None
        Threads for the STFT (None: the cores this process may use).
    keep_mel : bool
        Keep the standardised log-mel in ``Patches.mel`` and its chroma in
        ``Patches.chroma`` (for the beat tracker, whose bar decoder weighs chord changes).
    keep_chroma : bool
        Also compute ``Patches.chroma`` (for segment labels).

    Returns
    -------
    Patches
        Possibly with zero patches when the audio is shorter than one patch (~3.8 s).
    """
    mel, chroma = log_mel_and_chroma(y, config, n_threads, chroma=keep_chroma or keep_mel)
    mel = standardize_bands(mel)
    steps, step_times = steps_from_mel(mel, config)
    patches = patches_from_steps(steps, step_times, len(y) / config.sample_rate, config)
    if keep_mel:
        patches.mel = mel.astype(np.float32, copy=False)
    patches.chroma = chroma
    return patches


#: Settings that change the features (the key of feature caches).
FRONTEND_FIELDS = ("sample_rate", "n_fft", "hop_length", "n_mels", "fmax", "log_gamma",
                   "step_target_sec")


def frontend_settings(config: ModelConfig) -> dict:
    """The front-end part of a config (what a feature cache must match)."""
    return {name: getattr(config, name) for name in FRONTEND_FIELDS}
