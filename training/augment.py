"""Waveform augmentation for training: the same song as different records would sound.

Renders are clean; records are not.  Each training track is, per draw, changed in level, EQ
(a spectral tilt and two shelves), bandwidth (low-pass), noise floor (20-45 dB SNR), key
(+-2 semitones), tempo (+-8 %, references scaled with it) and codec (an MP3 round trip).  Effects
are Spotify's ``pedalboard`` (Rubber Band for tempo and pitch, LAME for MP3), all deterministic,
so a draw is a pure function of ``(seed, track id, variant)``: training resumes to identical
weights, and a draw's features can be cached.

Tempo and pitch cost about 2 s for a 4-minute song on one core (the rest together about 0.7 s),
so each track has ``variants`` fixed draws whose features are cached; epoch ``e`` uses draw
``e mod variants``.  Validation never sees augmentation.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass
from typing import Any, Dict, Tuple

import numpy as np

__all__ = ["AugmentConfig", "draw_augmentation", "apply_augmentation"]


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities (``p_*``) and ranges of the waveform augmentation.

    Attributes
    ----------
    variants : int
        Fixed draws per track (their features are cached); epoch ``e`` uses ``e % variants``.
    gain_db : (float, float)
        Level change, dB.
    p_eq, tilt_db, shelf_db : float, (float, float), (float, float)
        Probability of EQ; spectral tilt (dB at the top against the bottom, a low and a high
        shelf of opposite gain at 250 Hz / 3 kHz) and two extra shelves' gains, dB.
    p_lowpass, lowpass_hz : float, (float, float)
        Probability and cut-off range of a low-pass (bandwidth of old or cheap records).
    p_noise, snr_db : float, (float, float)
        Probability and signal-to-noise ratio of added pink-ish noise.
    p_pitch, pitch_semitones : float, float
        Probability and largest absolute pitch shift.
    p_tempo, tempo_change : float, float
        Probability and largest relative tempo change (0.08: 92-108 %).
    p_mp3, mp3_vbr : float, (int, int)
        Probability and LAME VBR quality range (0 best, 9 worst) of an MP3 round trip.
    """

    variants: int = 2
    gain_db: Tuple[float, float] = (-12.0, 6.0)
    p_eq: float = 0.7
    tilt_db: Tuple[float, float] = (-6.0, 6.0)
    shelf_db: Tuple[float, float] = (-6.0, 6.0)
    p_lowpass: float = 0.3
    lowpass_hz: Tuple[float, float] = (3500.0, 9000.0)
    p_noise: float = 0.4
    snr_db: Tuple[float, float] = (20.0, 45.0)
    p_pitch: float = 0.5
    pitch_semitones: float = 2.0
    p_tempo: float = 0.5
    tempo_change: float = 0.08
    p_mp3: float = 0.4
    mp3_vbr: Tuple[int, int] = (2, 9)

    def __post_init__(self) -> None:
        if int(self.variants) < 1:
            raise ValueError(f"variants must be >= 1, got {self.variants}")
        for name in ("p_eq", "p_lowpass", "p_noise", "p_pitch", "p_tempo", "p_mp3"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        if not 0.0 <= self.tempo_change < 0.5 or not 0.0 <= self.pitch_semitones <= 12.0:
            raise ValueError("tempo_change must be in [0, 0.5) and pitch_semitones in [0, 12]")

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _rng(seed: int, track_id: str, variant: int) -> np.random.Generator:
    key = zlib.crc32(track_id.encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence([int(seed), key, int(variant), 77]))


def _r(x: float) -> float:
    return round(float(x), 4)  # JSON-exact, so a draw can key a cache entry


def draw_augmentation(config: AugmentConfig, seed: int, track_id: str, variant: int
                      ) -> Dict[str, Any]:
    """Draw one augmentation of one track (a JSON-ready dict; empty effects are None).

    Parameters
    ----------
    config : AugmentConfig
    seed : int
        Training seed.
    track_id : str
    variant : int
        Which of the track's ``config.variants`` draws.

    Returns
    -------
    params : dict
        ``gain_db``; ``eq`` ({tilt_db, low_db, high_db, low_hz, high_hz} or None);
        ``lowpass_hz``, ``snr_db``, ``pitch_semitones``, ``tempo`` (a rate: 1.05 plays 5 %
        faster), ``mp3_vbr``: each None when not applied.
    """
    rng = _rng(seed, track_id, variant)
    c = config
    # Every value is drawn whether used or not, so one probability's change does not
    # reshuffle the other effects of the same draw.
    eq = {"tilt_db": _r(rng.uniform(*c.tilt_db)), "low_db": _r(rng.uniform(*c.shelf_db)),
          "high_db": _r(rng.uniform(*c.shelf_db)), "low_hz": _r(rng.uniform(80, 400)),
          "high_hz": _r(rng.uniform(2000, 8000))}
    values = {
        "gain_db": _r(rng.uniform(*c.gain_db)),
        "eq": eq if rng.uniform() < c.p_eq else None,
        "lowpass_hz": _r(rng.uniform(*c.lowpass_hz)),
        "snr_db": _r(rng.uniform(*c.snr_db)),
        "pitch_semitones": _r(rng.uniform(-c.pitch_semitones, c.pitch_semitones)),
        "tempo": _r(1.0 + rng.uniform(-c.tempo_change, c.tempo_change)),
        "mp3_vbr": int(rng.integers(c.mp3_vbr[0], c.mp3_vbr[1] + 1)),
    }
    for key, p in (("lowpass_hz", c.p_lowpass), ("snr_db", c.p_noise),
                   ("pitch_semitones", c.p_pitch), ("tempo", c.p_tempo), ("mp3_vbr", c.p_mp3)):
        if rng.uniform() >= p:
            values[key] = None
    values["noise_seed"] = int(rng.integers(2 ** 31))
    return values


#: Pink-noise filter (J. O. Smith's 4-coefficient fit, within about 0.3 dB of
#: -3 dB/octave over the audio band); an IIR filter, because an FFT of a whole song's length is slow.
_PINK_B = (0.049922035, -0.095993537, 0.050612699, -0.004408786)
_PINK_A = (1.0, -2.494956002, 2.017265875, -0.522189400)


def _noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise falling 3 dB an octave (pink: tape hiss and room noise), shape (n,)."""
    from scipy.signal import lfilter

    pink = lfilter(_PINK_B, _PINK_A, rng.standard_normal(n)).astype(np.float32)
    return pink / max(float(np.std(pink)), 1e-12)


def apply_augmentation(y: np.ndarray, sample_rate: int, params: Dict[str, Any]
                       ) -> Tuple[np.ndarray, float]:
    """Apply one drawn augmentation to mono audio.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
        Mono float audio.
    sample_rate : int
        Hz.
    params : dict
        From :func:`draw_augmentation`.

    Returns
    -------
    y_aug : np.ndarray, shape (n_out,), float32
        The augmented audio; ``n_out`` differs from ``n_samples`` under a tempo change.
    time_scale : float
        Multiply the reference's times by this to follow the tempo change (1 / tempo).
    """
    import pedalboard as pb

    x = np.asarray(y, dtype=np.float32)[None, :]
    tempo, pitch = params.get("tempo"), params.get("pitch_semitones")
    if tempo is not None or pitch is not None:
        # Rubber Band's faster engine: 2 s instead of 3.6 s for a 4-minute song.
        x = pb.time_stretch(x, sample_rate, stretch_factor=float(tempo or 1.0),
                            pitch_shift_in_semitones=float(pitch or 0.0), high_quality=False)
    chain = []
    eq = params.get("eq")
    if eq is not None:
        half = eq["tilt_db"] / 2.0
        chain += [pb.LowShelfFilter(cutoff_frequency_hz=250.0, gain_db=-half),
                  pb.HighShelfFilter(cutoff_frequency_hz=3000.0, gain_db=half),
                  pb.LowShelfFilter(cutoff_frequency_hz=eq["low_hz"], gain_db=eq["low_db"]),
                  pb.HighShelfFilter(cutoff_frequency_hz=eq["high_hz"], gain_db=eq["high_db"])]
    if params.get("lowpass_hz") is not None:
        chain.append(pb.LowpassFilter(cutoff_frequency_hz=float(params["lowpass_hz"])))
    if chain:
        x = pb.Pedalboard(chain)(x, sample_rate)
    x = x[0] * np.float32(10.0 ** (params["gain_db"] / 20.0))
    if params.get("snr_db") is not None:
        rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
        noise = _noise(x.shape[0], np.random.default_rng(params["noise_seed"]))
        x = x + noise * np.float32(rms * 10.0 ** (-params["snr_db"] / 20.0))
    if params.get("mp3_vbr") is not None:
        # LAME encodes only at its own rates; 22 050 Hz is one of them.
        n = x.shape[0]
        x = pb.MP3Compressor(vbr_quality=float(params["mp3_vbr"]))(x[None, :], sample_rate)[0]
        x = x[:n] if x.shape[0] >= n else np.pad(x, (0, n - x.shape[0]))
    x = np.nan_to_num(x.astype(np.float32), copy=False)
    return x, 1.0 / float(tempo or 1.0)
