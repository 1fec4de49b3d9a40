"""Beat and downbeat tracking: a small TCN on log-mel frames, decoded into a bar grid.

The tracker reads the same standardised log-mel as SSM-Net (so the mel spectrogram is
computed once per track), averaged in pairs of frames (about 46 ms). A temporal
convolutional network (dilated 1-D convolutions, residual, non-causal; after Davies &
Boeck, "Temporal convolutional networks for musical audio beat tracking", EUSIPCO 2019)
gives two activations per frame: beat and downbeat. Decoding:

1. beats: the dynamic-programming beat tracker of Ellis (2007) (as librosa's, in numpy)
   run on the beat activation instead of an onset-strength envelope, with the tempo from
   the activation's autocorrelation; then each beat moved to the activation's local
   maximum with parabolic interpolation (sub-frame times);
2. bar positions: a Viterbi pass over the beats with states (metre in {3, 4}, position in
   the bar) and the downbeat activation as observation; a bar may restart early (an
   irregular bar) with a small probability.

Tensors in, tensors out in :class:`BeatTCN`; decoding is numpy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from msaf_learned_ssm_jams.fileio import PathLike
from .config import ModelConfig
from .errors import CheckpointError, ConfigError

#: Format tag of beat-tracker files (distinct from SSM-Net checkpoints).
BEAT_FORMAT = "msaf-learned-ssm-beats"
BEAT_FORMAT_VERSION = 1
#: The shipped tracker.
DEFAULT_BEAT_MODEL = Path(__file__).resolve().parent / "models" / "beats.pt"


@dataclass(frozen=True)
class BeatConfig:
    """Settings of a beat tracker.

    Attributes
    ----------
    frames_per_frame : int
        Mel frames (``hop_length / sample_rate``, 23.2 ms by default) averaged into one
        tracker frame (2: 46.4 ms).
    channels : int
        Width of the TCN.
    kernel_size : int
        Odd kernel of the dilated convolutions.
    dilations : tuple of int
        One residual block per dilation; the receptive field is
        ``(kernel_size - 1) * sum(dilations) + 3`` frames (about 95 s by default).
    dropout : float
        Dropout in training.
    min_bpm, max_bpm : float
        Tempo range of the decoder.
    frontend : dict
        The log-mel settings (:func:`~msaf_learned_ssm.features.frontend_settings` of a
        :class:`ModelConfig`) the tracker was trained on.
    """

    frames_per_frame: int = 2
    channels: int = 32
    kernel_size: int = 5
    dilations: tuple = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    dropout: float = 0.1
    min_bpm: float = 50.0
    max_bpm: float = 220.0
    frontend: dict = field(default_factory=lambda: _default_frontend())

    def __post_init__(self) -> None:
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        for name in ("frames_per_frame", "channels", "kernel_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= 512:
                raise ConfigError(f"BeatConfig.{name} must be an integer in [1, 512], "
                                  f"got {value!r}")
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"BeatConfig.kernel_size must be odd, got {self.kernel_size}")
        if not self.dilations or len(self.dilations) > 16 or not all(
                0 < d <= 4096 for d in self.dilations):
            raise ConfigError("BeatConfig.dilations must be 1 to 16 integers in [1, 4096], "
                              f"got {self.dilations}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"BeatConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if not 20.0 <= self.min_bpm < self.max_bpm <= 400.0:
            raise ConfigError("BeatConfig needs 20 <= min_bpm < max_bpm <= 400, got "
                              f"{self.min_bpm}, {self.max_bpm}")
        ModelConfig(**self.frontend)  # validates the front-end settings

    @property
    def model_config(self) -> ModelConfig:
        """A :class:`ModelConfig` with this tracker's front-end (for :func:`log_mel`)."""
        return ModelConfig(**self.frontend)

    @property
    def frame_sec(self) -> float:
        """Hop between tracker frames (s)."""
        return self.frames_per_frame * self.model_config.frame_sec

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["dilations"] = list(self.dilations)
        return d


def _default_frontend() -> dict:
    from .features import frontend_settings
    return frontend_settings(ModelConfig())


# ---- the network ------------------------------------------------------------------------

class _ResidualBlock(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size, dilation=dilation,
                              padding=dilation * (kernel_size - 1) // 2)
        self.mix = nn.Conv1d(channels, channels, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(self.dropout(F.elu(self.conv(x))))


class BeatTCN(nn.Module):
    """Beat and downbeat activations from tracker frames.

    Input (B, n_mels, F) standardised log-mel frames; output (B, 2, F) logits: row 0 beat,
    row 1 downbeat (apply a sigmoid for probabilities).
    """

    def __init__(self, config: BeatConfig = BeatConfig()) -> None:
        super().__init__()
        self.config = config
        n_mels = config.model_config.n_mels
        c = config.channels
        self.stem = nn.Sequential(nn.Conv1d(n_mels, c, 3, padding=1), nn.ELU(),
                                  nn.Dropout(config.dropout))
        self.blocks = nn.Sequential(*[_ResidualBlock(c, config.kernel_size, d, config.dropout)
                                      for d in config.dilations])
        self.head = nn.Conv1d(c, 2, 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.ndim != 3 or frames.shape[1] != self.stem[0].in_channels:
            raise ValueError(f"expected frames of shape (B, {self.stem[0].in_channels}, F), "
                             f"got {tuple(frames.shape)}")
        return self.head(F.elu(self.blocks(self.stem(frames))))


# ---- features ---------------------------------------------------------------------------

def tracker_frames(mel: np.ndarray, frames_per_frame: int, mel_frame_sec: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Average standardised log-mel frames in groups for the tracker.

    Parameters
    ----------
    mel : np.ndarray, shape (n_mels, n_mel_frames)
        Standardised log-mel (:func:`~msaf_learned_ssm.features.standardize_bands`).
    frames_per_frame : int
    mel_frame_sec : float
        Hop of the mel frames (s); frame ``j`` is centred at ``j * mel_frame_sec``.

    Returns
    -------
    frames : np.ndarray, shape (n_mels, F), float32
        ``F = n_mel_frames // frames_per_frame`` (a last partial group is dropped).
    times : np.ndarray, shape (F,)
        Centre of each group (s).
    """
    g = int(frames_per_frame)
    n = mel.shape[1] // g
    frames = mel[:, :n * g].reshape(mel.shape[0], n, g).mean(axis=2)
    times = (np.arange(n) * g + (g - 1) / 2.0) * mel_frame_sec
    return frames.astype(np.float32, copy=False), times


# ---- decoding ---------------------------------------------------------------------------

@dataclass
class Beats:
    """A beat grid.

    Attributes
    ----------
    times : np.ndarray, shape (n_beats,)
        Beat times (s), increasing.
    positions : np.ndarray of int, shape (n_beats,)
        Position of each beat in its bar, 1 ... beats_per_bar (1 = downbeat).
    """

    times: np.ndarray
    positions: np.ndarray

    @property
    def downbeats(self) -> np.ndarray:
        """Times of the beats at position 1 (s)."""
        return self.times[self.positions == 1]


def _refine(activation: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Move each frame to the local maximum (+-1 frame) and interpolate it parabolically."""
    n = len(activation)
    out = frames.astype(float)
    for i, f in enumerate(frames):
        lo, hi = max(f - 1, 0), min(f + 2, n)
        f = lo + int(np.argmax(activation[lo:hi]))
        if 0 < f < n - 1:
            a, b, c = activation[f - 1], activation[f], activation[f + 1]
            curvature = a - 2 * b + c
            offset = 0.5 * (a - c) / curvature if curvature < 0 else 0.0
            out[i] = f + float(np.clip(offset, -0.5, 0.5))
        else:
            out[i] = f
    return out


#: Probability that a bar ends early (:func:`bar_positions`). 0.005 rather than 0.02: on 14
#: unlabelled real training tracks it raised the downbeat agreement with madmom from 0.666
#: to 0.684 (150 ms) and on 11 band renders the downbeat F from 0.982 to 0.984; the 12
#: held-out real tracks confirmed it once, 0.484 to 0.507 (``bench/bar_decoder_sweep.py``).
#: A bar decoder that restarts less easily keeps a phase it has found through fills.
BAR_RESTART_PROBABILITY = 0.005


def bar_positions(downbeat_strength: np.ndarray, meters: Sequence[int] = (3, 4),
                  p_restart: float = BAR_RESTART_PROBABILITY, p_meter_change: float = 1e-4,
                  downbeat_prior: Optional[float] = None) -> np.ndarray:
    """Most likely position in the bar of each beat (Viterbi).

    Parameters
    ----------
    downbeat_strength : np.ndarray, shape (n_beats,)
        Downbeat probability at each beat, in [0, 1].
    meters : sequence of int
        Beats per bar allowed.
    p_restart : float
        Probability that a bar ends early and a new one starts (irregular bars).
    p_meter_change : float
        Probability of a change of metre at a bar line.
    downbeat_prior : float in (0, 1) or None
        The share of downbeats among the beats that ``downbeat_strength`` was calibrated
        on. Given, each strength (a posterior) is divided by that prior to give a
        likelihood ratio, so that weak evidence no longer favours the metres with the
        fewest downbeats; None uses the strengths as they are.

    Returns
    -------
    positions : np.ndarray of int, shape (n_beats,)
        1 ... m (1 = downbeat).
    """
    p = np.clip(np.asarray(downbeat_strength, dtype=float), 1e-4, 1 - 1e-4)
    states = [(m, j) for m in meters for j in range(1, m + 1)]
    n_states = len(states)
    log_t = np.full((n_states, n_states), -np.inf)
    for a, (m, j) in enumerate(states):
        for b, (m2, j2) in enumerate(states):
            if m2 == m:
                if j2 == (j % m) + 1:
                    log_t[a, b] = np.log(1 - p_restart)
                elif j2 == 1 and j != m:
                    log_t[a, b] = np.log(p_restart)
            elif j == m and j2 == 1:
                log_t[a, b] = np.log(p_meter_change)
    is_down = np.array([j == 1 for _, j in states])
    down_l, other_l = np.log(p), np.log(1 - p)
    if downbeat_prior is not None:
        down_l, other_l = down_l - np.log(downbeat_prior), other_l - np.log(1 - downbeat_prior)
    log_obs = np.where(is_down[None, :], down_l[:, None], other_l[:, None])
    n = len(p)
    if n == 0:
        return np.zeros(0, dtype=int)
    score = log_obs[0] - np.log(n_states)
    back = np.zeros((n, n_states), dtype=int)
    for i in range(1, n):
        cand = score[:, None] + log_t
        back[i] = np.argmax(cand, axis=0)
        score = cand[back[i], np.arange(n_states)] + log_obs[i]
    path = np.zeros(n, dtype=int)
    path[-1] = int(np.argmax(score))
    for i in range(n - 1, 0, -1):
        path[i - 1] = back[i, path[i]]
    return np.array([states[s][1] for s in path], dtype=int)


def beat_period(activation: np.ndarray, frame_rate: float, min_bpm: float, max_bpm: float,
                start_bpm: float = 120.0, std_octaves: float = 1.0) -> float:
    """Beat period (frames) of an activation: the autocorrelation peak within the tempo
    range, weighted by a log-normal tempo prior (as ``librosa.feature.tempo``).

    Parameters
    ----------
    activation : np.ndarray, shape (F,)
    frame_rate : float
        Frames per second.
    min_bpm, max_bpm : float
        Tempo range.
    start_bpm, std_octaves : float
        Centre and width (octaves) of the prior.

    Returns
    -------
    float
        Frames per beat (sub-frame, parabolic interpolation of the peak).
    """
    x = np.asarray(activation, dtype=float)
    x = x - x.mean()
    n = len(x)
    spectrum = np.fft.rfft(x, 2 * n)
    ac = np.fft.irfft(np.abs(spectrum) ** 2)[:n]
    lo = max(1, int(np.floor(60.0 * frame_rate / max_bpm)))
    hi = min(n - 2, int(np.ceil(60.0 * frame_rate / min_bpm)))
    if hi <= lo:
        return 60.0 * frame_rate / start_bpm
    lags = np.arange(lo, hi + 1)
    bpm = 60.0 * frame_rate / lags
    prior = np.exp(-0.5 * (np.log2(bpm / start_bpm) / std_octaves) ** 2)
    k = int(np.argmax(ac[lags] * prior))
    lag = float(lags[k])
    if 0 < k < len(lags) - 1:
        a, b, c = ac[lags[k] - 1], ac[lags[k]], ac[lags[k] + 1]
        curvature = a - 2 * b + c
        if curvature < 0:
            lag += float(np.clip(0.5 * (a - c) / curvature, -0.5, 0.5))
    return lag


def dp_beats(activation: np.ndarray, period: float, tightness: float = 100.0) -> np.ndarray:
    """Beat frames by dynamic programming (Ellis, "Beat tracking by dynamic programming",
    JNMR 2007; the algorithm of ``librosa.beat.beat_track``, in numpy).

    Each frame's score is its (smoothed, normalised) activation plus the best score of a
    predecessor between ``period / 2`` and ``2 * period`` frames before it, penalised by
    ``tightness * log(interval / period) ** 2``.

    Parameters
    ----------
    activation : np.ndarray, shape (F,)
    period : float
        Frames per beat.
    tightness : float
        How strictly the intervals follow ``period``.

    Returns
    -------
    np.ndarray of int
        Increasing beat frames (empty when the activation is flat).
    """
    x = np.asarray(activation, dtype=float)
    n = len(x)
    if n == 0 or not np.any(x > 0):
        return np.zeros(0, dtype=int)
    x = x / (x.std(ddof=1) + 1e-12)
    p = max(int(round(period)), 2)
    window = np.exp(-0.5 * (np.arange(-p, p + 1) * 32.0 / p) ** 2)
    local = np.convolve(x, window, mode="same")
    d_min, d_max = max(int(round(p / 2)), 1), 2 * p
    offsets = np.arange(d_min, d_max + 1)
    penalty = tightness * (np.log(offsets) - np.log(p)) ** 2
    cumscore = np.empty(n)
    backlink = np.full(n, -1, dtype=int)
    threshold = 0.01 * local.max()
    first = True
    for i in range(n):
        lo, hi = i - d_max, i - d_min
        if hi >= 0:
            locs = np.arange(max(lo, 0), hi + 1)
            scores = cumscore[locs] - penalty[i - locs - d_min]
            k = int(np.argmax(scores))
            cumscore[i] = local[i] + scores[k]
            best = int(locs[k])
        else:
            cumscore[i] = local[i]
            best = -1
        if first and local[i] < threshold:
            backlink[i] = -1
        else:
            backlink[i] = best
            first = False
    # The last beat: the last local maximum of the cumulative score above half the median
    # of the local maxima (as librosa).
    peaks = np.flatnonzero((cumscore[1:-1] > cumscore[:-2]) & (cumscore[1:-1] >= cumscore[2:])) + 1
    if peaks.size == 0:
        return np.zeros(0, dtype=int)
    good = peaks[cumscore[peaks] >= 0.5 * np.median(cumscore[peaks])]
    beats = []
    i = int(good[-1])
    while i >= 0:
        beats.append(i)
        i = int(backlink[i])
    return np.array(beats[::-1], dtype=int)


def _peak_near(activation: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Largest activation within one frame of each of ``frames``, shape (n,)."""
    return np.array([activation[max(f - 1, 0): f + 2].max() for f in frames], dtype=float)


#: Tempo-octave check of the decoder: when the beat activation between the beats found is,
#: on average, at least this share of the activation on them, the network hears beats
#: there too and the beats are redone at twice the tempo (None: never). Off: 0.2, the best
#: on 40 unlabelled real training tracks against madmom's beats (150 ms: beat F 0.801 ->
#: 0.850, downbeat F 0.594 -> 0.607), did not hold on the 12 held-out ones (0.786 / 0.507
#: -> 0.723 / 0.419: three tracks at the right tempo were doubled); bench/results/beats.md.
DOUBLE_TEMPO_RATIO: Optional[float] = None


def offbeat_ratio(beat_activation: np.ndarray, frames: np.ndarray) -> float:
    """Mean beat activation halfway between consecutive beats over the mean on the beats.

    Parameters
    ----------
    beat_activation : np.ndarray, shape (F,)
    frames : np.ndarray of int, shape (n,)
        Beat frames, increasing.

    Returns
    -------
    float
        Near 0 when nothing sounds like a beat between the beats; near 1 when the
        midpoints are as beat-like as the beats (the tempo found is half the heard one).
        NaN with fewer than 3 beats.
    """
    frames = np.asarray(frames, dtype=int)
    if frames.size < 3:
        return float("nan")
    act = np.asarray(beat_activation, dtype=float)
    mids = np.rint((frames[:-1] + frames[1:]) / 2.0).astype(int)
    return float(_peak_near(act, mids).mean()) / max(float(_peak_near(act, frames).mean()), 1e-9)


#: Weight of the harmonic-change cue in the bar decoder's downbeat evidence (0: off): each
#: beat's evidence is ``(1 - w) * downbeat activation + w * harmonic_change``. Chords
#: change on downbeats more than elsewhere, also where the tracker's downbeat activation is
#: weak (real records). Chosen on 40 unlabelled real training tracks against madmom's bars
#: (150 ms downbeat F: 0.594 off; 0.654, 0.659, 0.662 at 0.2, 0.3, 0.35; 0.631 at 0.4;
#: context 2 beats each side, 1 and 3 lower); the 12 held-out tracks confirmed it once
#: (0.507 -> 0.533). It costs the band renders a little, where the tracker's own downbeats
#: are strong (40 validation renders 0.969 -> 0.964). Beat times do not change.
#: ``bench/bar_decoder_sweep.py --harmony``, ``bench/results/beats.md``.
HARMONY_WEIGHT = 0.35
#: Beats on each side of a beat whose chroma :func:`harmonic_change` compares.
HARMONY_CONTEXT = 2

#: Version of what :func:`decode_beats` makes of a tracker's activations, recorded beside
#: the tracker file's hash (:func:`package_tracker_identity`: beat-grid model files; the
#: keys of training's beat caches): the same file gives other bars when the decoder
#: changes. 2: the harmonic-change cue in the bar decoder.
DECODER_VERSION = 2


def chroma_per_beat(chroma: np.ndarray, frame_sec: float, beat_times: np.ndarray
                    ) -> np.ndarray:
    """Median chroma from each beat to the next (the last beat: to the end).

    Parameters
    ----------
    chroma : np.ndarray, shape (n_frames, 12)
        Frame ``t`` at ``t * frame_sec`` seconds.
    frame_sec : float
    beat_times : np.ndarray, shape (n_beats,)
        Increasing beat times (s).

    Returns
    -------
    np.ndarray, shape (n_beats, 12)
        Zeros for a beat past the chroma's end.
    """
    n = len(chroma)
    starts = np.clip(np.round(np.asarray(beat_times) / frame_sec).astype(int), 0, n)
    ends = np.maximum(np.append(starts[1:], n), np.minimum(starts + 1, n))
    rows = np.zeros((len(starts), chroma.shape[1]))
    for i, (a, b) in enumerate(zip(starts, ends)):
        if b > a:
            rows[i] = np.median(chroma[a:b], axis=0)
    return rows


def harmonic_change(rows: np.ndarray, context: int = HARMONY_CONTEXT) -> np.ndarray:
    """How much the harmony changes at each beat, scaled to [0, 1] within the track.

    The cosine distance between the mean chroma of the ``context`` beats before a beat and
    of the ``context`` beats from it on, then mapped linearly so that the track's 5th
    percentile is 0 and its 95th is 1 (clipped). Beats without ``context`` beats on either
    side get 0.

    Parameters
    ----------
    rows : np.ndarray, shape (n_beats, 12)
        Chroma per beat (:func:`chroma_per_beat`).
    context : int >= 1

    Returns
    -------
    np.ndarray, shape (n_beats,)
    """
    n = len(rows)
    change = np.zeros(n)
    if n < 2 * context + 1:
        return change
    cumulative = np.vstack([np.zeros((1, rows.shape[1])), np.cumsum(rows, axis=0)])
    i = np.arange(context, n - context + 1)
    before = cumulative[i] - cumulative[i - context]
    after = cumulative[i + context] - cumulative[i]
    norms = np.linalg.norm(before, axis=1) * np.linalg.norm(after, axis=1)
    cosine = np.where(norms > 0, np.sum(before * after, axis=1) / np.maximum(norms, 1e-12), 1.0)
    change[i] = 1.0 - cosine
    lo, hi = np.percentile(change, [5, 95])
    if hi - lo <= 1e-9:
        return np.zeros(n)
    return np.clip((change - lo) / (hi - lo), 0.0, 1.0)


def decode_beats(activations: np.ndarray, times: np.ndarray, config: BeatConfig = BeatConfig(),
                 p_restart: float = BAR_RESTART_PROBABILITY,
                 meters: Sequence[int] = (3, 4),
                 double_tempo_ratio: Optional[float] = DOUBLE_TEMPO_RATIO,
                 chroma: Optional[tuple[np.ndarray, float]] = None,
                 harmony_weight: float = HARMONY_WEIGHT,
                 harmony_context: int = HARMONY_CONTEXT,
                 downbeat_prior: Optional[float] = None) -> Beats:
    """Beat grid with bar positions from the tracker's activations.

    Parameters
    ----------
    activations : np.ndarray, shape (2, F)
        Beat and downbeat probabilities per tracker frame.
    times : np.ndarray, shape (F,)
        Frame times (s), evenly spaced by ``config.frame_sec``.
    config : BeatConfig
    p_restart, meters : float, sequence of int
        The bar decoder's settings (:func:`bar_positions`).
    double_tempo_ratio : float or None
        Tempo-octave check (:data:`DOUBLE_TEMPO_RATIO`, :func:`offbeat_ratio`).
    chroma : (np.ndarray of shape (n_frames, 12), float) or None
        The track's chroma frames and their hop (s). Given, the bar decoder also weighs
        the :func:`harmonic_change` at each beat (``harmony_weight``,
        :data:`HARMONY_WEIGHT`); the beat times do not depend on it.
    harmony_weight : float in [0, 1]
    harmony_context : int >= 1
        Beats on each side compared (:data:`HARMONY_CONTEXT`).
    downbeat_prior : float or None
        See :func:`bar_positions`.

    Returns
    -------
    Beats
        Empty when no beat is found (silence, very short audio).
    """
    activations = np.asarray(activations, dtype=float)
    if activations.ndim != 2 or activations.shape[0] != 2 or activations.shape[1] != len(times):
        raise ValueError(f"activations must have shape (2, {len(times)}), "
                         f"got {activations.shape}")
    if not np.all(np.isfinite(activations)):
        raise ValueError("non-finite beat activations")
    beat_act, down_act = activations
    empty = Beats(np.zeros(0), np.zeros(0, dtype=int))
    if len(times) < 8 or beat_act.max() < 0.05:
        return empty
    # numpy, not librosa.beat: librosa's numba kernels take seconds to compile in every
    # new process, more than the whole analysis of a track (bench/results/speed.md).
    frame_rate = 1.0 / config.frame_sec
    period = beat_period(beat_act, frame_rate, config.min_bpm, config.max_bpm)
    frames = dp_beats(beat_act, period)
    if (double_tempo_ratio is not None and 60.0 * frame_rate / (period / 2) <= config.max_bpm
            and offbeat_ratio(beat_act, frames) >= double_tempo_ratio):
        frames = dp_beats(beat_act, period / 2)
    if frames.size == 0:
        return empty
    # The DP places beats through silences too: keep those where the network hears a beat
    # nearby, trimming weak beats at the ends only.
    strength = _peak_near(beat_act, frames)
    strong = np.flatnonzero(strength >= 0.1)
    if strong.size == 0:
        return empty
    frames = frames[strong[0]: strong[-1] + 1]
    exact = _refine(beat_act, frames)
    beat_times = np.interp(exact, np.arange(len(times)), times)
    down_strength = _peak_near(down_act, frames)
    if chroma is not None and harmony_weight > 0:
        if np.ndim(chroma[0]) != 2 or not chroma[1] > 0:
            raise ValueError("chroma must be (frames of shape (n_frames, 12), hop in s > 0)")
        change = harmonic_change(chroma_per_beat(chroma[0], chroma[1], beat_times),
                                 harmony_context)
        down_strength = (1.0 - harmony_weight) * down_strength + harmony_weight * change
    return Beats(beat_times, bar_positions(down_strength, meters, p_restart,
                                           downbeat_prior=downbeat_prior))


# ---- model files ------------------------------------------------------------------------

def save_beat_model(model: BeatTCN, path: PathLike, **extra: Any) -> None:
    """Save a tracker atomically (config inside); ``extra`` must be plain values."""
    from .checkpoint import atomic_torch_save
    atomic_torch_save({"format": BEAT_FORMAT, "format_version": BEAT_FORMAT_VERSION,
                       "config": model.config.to_dict(),
                       "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                       **extra}, path)


def load_beat_model(path: PathLike = DEFAULT_BEAT_MODEL) -> tuple[BeatTCN, dict[str, Any]]:
    """Load a tracker file safely (weights only), in eval mode on the CPU.

    Raises
    ------
    CheckpointError
        Not a beat-tracker file, bad settings, mismatched or non-finite weights.
    """
    from .checkpoint import describe_mismatch, read_checkpoint
    data = read_checkpoint(path)
    if data.get("format") != BEAT_FORMAT:
        raise CheckpointError(f"{path}: not a beat-tracker file (format "
                              f"{data.get('format')!r}, expected {BEAT_FORMAT!r})")
    try:
        config = BeatConfig(**data["config"])
    except (TypeError, KeyError, ConfigError) as exc:
        raise CheckpointError(f"{path}: invalid beat-tracker settings ({exc})") from None
    model = BeatTCN(config)
    state = data.get("state_dict", {})
    bad = [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point()
           and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{path}: non-finite weights in {', '.join(bad[:3])}")
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise CheckpointError(f"{path}: weights do not match the settings "
                              f"({describe_mismatch(model.state_dict(), state)})") from None
    meta = {k: v for k, v in data.items() if k != "state_dict"}
    return model.eval(), meta


class BeatTracker:
    """A loaded beat tracker.

    Parameters
    ----------
    model : path-like or BeatTCN, optional
        A tracker file (default: the shipped ``models/beats.pt``) or a module (copied).
    device : torch.device or str
    """

    def __init__(self, model: Union[PathLike, BeatTCN, None] = None,
                 device: Union[str, torch.device] = "cpu") -> None:
        import copy
        if isinstance(model, BeatTCN):
            self.model, self.meta = copy.deepcopy(model).eval(), {}
        else:
            self.model, self.meta = load_beat_model(model or DEFAULT_BEAT_MODEL)
        self.device = torch.device(device)
        self.model = self.model.to(self.device)

    @property
    def config(self) -> BeatConfig:
        return self.model.config

    @torch.inference_mode()
    def activations(self, frames: np.ndarray) -> np.ndarray:
        """Beat and downbeat probabilities, shape (2, F), for frames (n_mels, F)."""
        x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))[None]
        return torch.sigmoid(self.model(x.to(self.device)))[0].float().cpu().numpy()

    def mel_activations(self, mel: np.ndarray) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """Beat and downbeat probabilities (2, F) and frame times (F,) of a standardised
        log-mel (n_mels, n_mel_frames) of this tracker's front-end; None when it is too
        short to track (fewer than 8 tracker frames)."""
        frames, times = tracker_frames(mel, self.config.frames_per_frame,
                                       self.config.model_config.frame_sec)
        if frames.shape[1] < 8:
            return None
        return self.activations(frames), times

    def track_mel(self, mel: np.ndarray, chroma: Optional[np.ndarray] = None) -> Beats:
        """Beats from a standardised log-mel (n_mels, n_mel_frames) of this tracker's
        front-end; ``chroma`` (n_mel_frames, 12), of the same frames, adds the harmonic
        cue to the bar decoder (:func:`decode_beats`)."""
        found = self.mel_activations(mel)
        if found is None:
            return Beats(np.zeros(0), np.zeros(0, dtype=int))
        harmony = None if chroma is None else (chroma, self.config.model_config.frame_sec)
        return decode_beats(*found, self.config, chroma=harmony)

    def track_patches(self, patches) -> Beats:
        """Beats from the log-mel and chroma kept with a track's patches
        (:func:`~msaf_learned_ssm.features.compute_patches` with ``keep_mel=True``): what
        the Analyzer and the benches use, so that both decode alike."""
        if patches.mel is None:
            raise ValueError("the patches hold no log-mel: compute them with keep_mel=True")
        return self.track_mel(patches.mel, patches.chroma)

    def track(self, y: np.ndarray, n_threads: Optional[int] = None) -> Beats:
        """Beats of mono audio at the tracker's sample rate (log-mel and chroma from one
        STFT)."""
        from .features import log_mel_and_chroma, standardize_bands
        mel, chroma = log_mel_and_chroma(y, self.config.model_config, n_threads)
        return self.track_mel(standardize_bands(mel), chroma)


def package_tracker_identity(path: Optional[PathLike] = None) -> dict:
    """What a model file or an estimation records about the package's tracker: ``name``
    ("package"), its ``file`` name and SHA-256 (``sha256``; None when it is missing), and
    the decoder's version (``decoder``, :data:`DECODER_VERSION`)."""
    from .model_files import file_sha256

    path = Path(path or DEFAULT_BEAT_MODEL)
    return {"name": "package", "file": path.name,
            "sha256": file_sha256(path) if path.is_file() else None,
            "decoder": DECODER_VERSION}


_SHARED_TRACKER: dict = {}


def shared_tracker(device: Union[str, torch.device] = "cpu") -> BeatTracker:
    """The shipped tracker, loaded once per process and device."""
    key = str(device)
    if key not in _SHARED_TRACKER:
        _SHARED_TRACKER[key] = BeatTracker(None, device)
    return _SHARED_TRACKER[key]


# ---- using the grid ---------------------------------------------------------------------

def snap_to_grid(boundaries: np.ndarray, grid: np.ndarray, max_shift: float) -> np.ndarray:
    """Move each inner boundary to the nearest grid time within ``max_shift`` seconds.

    Parameters
    ----------
    boundaries : np.ndarray, shape (n,)
        Boundary times (s), first the start and last the end of the track (kept as they are).
    grid : np.ndarray, shape (m,)
        Allowed times (s), e.g. downbeats.
    max_shift : float
        Boundaries farther than this from every grid time stay where they are (s).

    Returns
    -------
    np.ndarray, shape (<= n,)
        Sorted; boundaries that land on the same grid time, or on the track's start or
        end, are merged.
    """
    boundaries = np.asarray(boundaries, dtype=float)
    grid = np.sort(np.asarray(grid, dtype=float))
    if boundaries.size <= 2 or grid.size == 0:
        return boundaries
    start, end = boundaries[0], boundaries[-1]
    inner = boundaries[1:-1]
    idx = np.clip(np.searchsorted(grid, inner), 1, len(grid) - 1) if len(grid) > 1 else \
        np.zeros(len(inner), dtype=int)
    left, right = grid[np.maximum(idx - 1, 0)], grid[idx]
    nearest = np.where(np.abs(inner - left) <= np.abs(right - inner), left, right)
    moved = np.where(np.abs(nearest - inner) <= max_shift, nearest, inner)
    moved = moved[(moved > start) & (moved < end)]
    return np.concatenate([[start], np.unique(moved), [end]])
