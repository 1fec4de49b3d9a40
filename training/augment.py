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

The beat tracker trains with :meth:`AugmentConfig.heavy`, which adds what separates records
from renders for beats: tempos +-25 %, a room (reverb), bus compression, lo-fi (bit depth
and sample rate), and drums turned down or removed (harmonic-percussive separation of the
mix, the percussive part attenuated by 6-60 dB), so that beats must come from the other
instruments too.  These effects are off (probability 0) by default; with all of them off a
draw is the same dict as before they existed, so caches keyed on draws stay valid.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np

__all__ = ["AugmentConfig", "draw_augmentation", "apply_augmentation", "attenuate_percussion"]


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
    p_drums_down, drums_db : float, (float, float)
        Probability and attenuation range (dB, negative) of the mix's percussive part
        (harmonic-percussive separation); -60 dB is drums absent.
    p_reverb, reverb_room, reverb_wet : float, (float, float), (float, float)
        Probability, room size and wet level of a reverb.
    p_compress, compress_db, compress_ratio : float, (float, float), (float, float)
        Probability, threshold (dB below the track's peak) and ratio of a compressor.
    p_lofi, lofi_bits, lofi_hz : float, (int, int), (float, float)
        Probability, bit depth and sample rate of a lo-fi pass (bit-crush and resample).
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
    p_drums_down: float = 0.0
    drums_db: Tuple[float, float] = (-60.0, -6.0)
    p_reverb: float = 0.0
    reverb_room: Tuple[float, float] = (0.3, 0.95)
    reverb_wet: Tuple[float, float] = (0.1, 0.45)
    p_compress: float = 0.0
    compress_db: Tuple[float, float] = (-30.0, -8.0)
    compress_ratio: Tuple[float, float] = (2.0, 10.0)
    p_lofi: float = 0.0
    lofi_bits: Tuple[int, int] = (6, 12)
    lofi_hz: Tuple[float, float] = (6000.0, 16000.0)

    @classmethod
    def heavy(cls, variants: int = 3) -> "AugmentConfig":
        """The beat tracker's augmentation: records as far from renders as they get.

        Tempo +-25 % (80 % of the draws), drums down or gone (half), reverb, compression,
        lo-fi, noise down to 10 dB SNR, besides the default EQ, low-pass, pitch and MP3.
        """
        return cls(variants=variants, p_tempo=0.8, tempo_change=0.25, p_noise=0.5,
                   snr_db=(10.0, 40.0), p_drums_down=0.5, p_reverb=0.4, p_compress=0.4,
                   p_lofi=0.2)

    def __post_init__(self) -> None:
        if int(self.variants) < 1:
            raise ValueError(f"variants must be >= 1, got {self.variants}")
        for name in ("p_eq", "p_lowpass", "p_noise", "p_pitch", "p_tempo", "p_mp3",
                     "p_drums_down", "p_reverb", "p_compress", "p_lofi"):
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
    # Drawn after everything above, so that enabling them changes no earlier value, and
    # added only when enabled, so that a light draw is the dict it always was.
    heavy = {
        "drums_db": (c.p_drums_down, _r(rng.uniform(*c.drums_db))),
        "reverb": (c.p_reverb, {"room": _r(rng.uniform(*c.reverb_room)),
                                "wet": _r(rng.uniform(*c.reverb_wet))}),
        "compress": (c.p_compress, {"threshold_db": _r(rng.uniform(*c.compress_db)),
                                    "ratio": _r(rng.uniform(*c.compress_ratio))}),
        "lofi": (c.p_lofi, {"bits": int(rng.integers(c.lofi_bits[0], c.lofi_bits[1] + 1)),
                            "hz": _r(rng.uniform(*c.lofi_hz))}),
    }
    for key, (p, value) in heavy.items():
        applied = rng.uniform() < p
        if p > 0:
            values[key] = value if applied else None
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


#: The last separation (key, harmonic, percussive): a track's draws come one after another,
#: and the separation (about 8 s for a 4-minute song) does not depend on the draw.
_last_separation: Optional[Tuple[Tuple[int, int], np.ndarray, np.ndarray]] = None


def _separate(y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Harmonic and percussive STFTs of ``y`` (n_fft 1024: half the cost of 2048, and
    drums are short), reusing the last one when ``y`` is the same audio."""
    import librosa

    global _last_separation
    key = (len(y), zlib.crc32(np.ascontiguousarray(y).tobytes()))
    if _last_separation is not None and _last_separation[0] == key:
        return _last_separation[1], _last_separation[2]
    harmonic, percussive = librosa.decompose.hpss(librosa.stft(y, n_fft=1024),
                                                  kernel_size=17)
    _last_separation = (key, harmonic, percussive)
    return harmonic, percussive


def attenuate_percussion(y: np.ndarray, gain_db: float) -> np.ndarray:
    """The mix with its percussive part turned down (drums quieter or absent).

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
        Mono float audio.
    gain_db : float
        Gain of the percussive part, dB (<= 0; -60 is drums gone).

    Returns
    -------
    np.ndarray, shape (n_samples,), float32
        harmonic + 10^(gain_db/20) * percussive, from librosa's median-filter
        harmonic-percussive separation (margin 1: the two parts sum to the mix).
    """
    import librosa

    if gain_db > 0:
        raise ValueError(f"gain_db must be <= 0, got {gain_db}")
    harmonic, percussive = _separate(np.asarray(y, dtype=np.float32))
    mixed = harmonic + np.float32(10.0 ** (float(gain_db) / 20.0)) * percussive
    return librosa.istft(mixed, n_fft=1024, length=len(y)).astype(np.float32)


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

    if params.get("drums_db") is not None:
        y = attenuate_percussion(y, params["drums_db"])
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
    if params.get("reverb") is not None:
        chain.append(pb.Reverb(room_size=params["reverb"]["room"],
                               wet_level=params["reverb"]["wet"],
                               dry_level=1.0 - 0.5 * params["reverb"]["wet"]))
    if params.get("compress") is not None:
        # The threshold is relative to the track's peak, so quiet and loud renders are
        # compressed alike.
        peak_db = 20.0 * np.log10(max(float(np.max(np.abs(x))), 1e-9))
        chain.append(pb.Compressor(threshold_db=peak_db + params["compress"]["threshold_db"],
                                   ratio=params["compress"]["ratio"], attack_ms=5.0,
                                   release_ms=100.0))
    if chain:
        x = pb.Pedalboard(chain)(x, sample_rate)
    if params.get("lofi") is not None:
        lofi = params["lofi"]
        x = pb.Pedalboard([pb.Bitcrush(bit_depth=float(lofi["bits"])),
                           pb.Resample(target_sample_rate=float(lofi["hz"]))])(x, sample_rate)
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
