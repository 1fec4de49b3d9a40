"""Training corpora in MSAF layout (``audio/``, ``references/*.jams``) and a feature cache.

The cache stores each track's standardised log-mel steps (not the patches, 25x smaller),
keyed by the audio file's content and the front-end settings, written atomically and
checked when read: a corrupt entry is rebuilt, never trusted.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence, TypeVar

import numpy as np

from msaf_learned_ssm.audio import load_audio
from msaf_learned_ssm.beats import Beats
from msaf_learned_ssm.config import ModelConfig
from msaf_learned_ssm.errors import AnnotationError
from msaf_learned_ssm.fileio import PathLike, atomic_open
from msaf_learned_ssm.features import (Patches, compute_steps, frontend_settings,
                                       patches_from_steps)

T = TypeVar("T")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".aif", ".aiff", ".m4a")


@dataclass(frozen=True)
class Track:
    """One training track: id (file stem), audio file and reference JAMS (None for an
    unlabelled track, which trains against the teachers' outputs)."""

    track_id: str
    audio: Path
    reference: Optional[Path]


def find_tracks(corpus_dir: PathLike, ids: Optional[Iterable[str]] = None,
                allow_missing: bool = False) -> list[Track]:
    """Tracks of an MSAF-layout corpus that have both audio and a reference JAMS.

    Parameters
    ----------
    corpus_dir : path
        Folder with ``audio/`` and ``references/``.
    ids : iterable of str, optional
        Keep only these track ids (file stems); an id without audio or reference is an
        error, unless ``allow_missing``: then it is left out with a warning naming it.

    Raises
    ------
    AnnotationError
        The folder layout is wrong, or a requested id is missing.
    """
    corpus_dir = Path(corpus_dir)
    audio_dir, ref_dir = corpus_dir / "audio", corpus_dir / "references"
    for folder in (audio_dir, ref_dir):
        if not folder.is_dir():
            raise AnnotationError(f"{corpus_dir}: not an MSAF corpus (missing {folder.name}/)")
    tracks, no_reference = {}, []
    for audio in sorted(audio_dir.iterdir()):
        if audio.suffix.lower() not in AUDIO_EXTENSIONS or audio.name.startswith("."):
            continue
        reference = ref_dir / f"{audio.stem}.jams"
        if reference.is_file():
            tracks[audio.stem] = Track(audio.stem, audio, reference)
        else:
            no_reference.append(audio.name)
    if no_reference:
        warnings.warn(f"{corpus_dir}: {len(no_reference)} audio files have no reference JAMS "
                      f"and are not used (e.g. {', '.join(no_reference[:3])})")
    if ids is not None:
        ids = [str(i).strip() for i in ids if str(i).strip()]
        missing = [i for i in ids if i not in tracks]
        if missing and allow_missing:
            warnings.warn(f"{corpus_dir}: {len(missing)} requested tracks have no audio or "
                          f"reference and are left out: {', '.join(missing)}")
        elif missing:
            raise AnnotationError(f"{corpus_dir}: {len(missing)} requested tracks are missing "
                                  f"(e.g. {', '.join(missing[:5])})")
        return [tracks[i] for i in ids if i in tracks]
    return list(tracks.values())


def find_unlabeled(corpus_dir: PathLike, ids: Optional[Iterable[str]] = None) -> list[Track]:
    """Tracks of a corpus of audio without references (``audio/`` of MSAF's layout, as
    ``build-unlabeled`` writes it), each with ``reference=None``.

    Parameters
    ----------
    corpus_dir : path
        Folder with ``audio/``.
    ids : iterable of str, optional
        Keep only these track ids (file stems); a missing one is an error.

    Raises
    ------
    AnnotationError
        No ``audio/`` folder, no audio in it, or a requested id is missing.
    """
    corpus_dir = Path(corpus_dir)
    audio_dir = corpus_dir / "audio"
    if not audio_dir.is_dir():
        raise AnnotationError(f"{corpus_dir}: not an MSAF corpus (missing audio/)")
    tracks = {a.stem: Track(a.stem, a, None) for a in sorted(audio_dir.iterdir())
              if a.suffix.lower() in AUDIO_EXTENSIONS and not a.name.startswith(".")}
    if not tracks:
        raise AnnotationError(f"{audio_dir}: no audio files")
    if ids is None:
        return list(tracks.values())
    ids = [str(i).strip() for i in ids if str(i).strip()]
    missing = [i for i in ids if i not in tracks]
    if missing:
        raise AnnotationError(f"{corpus_dir}: {len(missing)} requested tracks are missing "
                              f"(e.g. {', '.join(missing[:5])})")
    return [tracks[i] for i in ids]


def read_id_list(path: PathLike) -> list[str]:
    """Track ids of a split file (one per line; blank lines and ``#`` comments ignored)."""
    lines = Path(path).read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def seeded_split(items: Sequence[T], fractions: Sequence[float], seed: int,
                 min_size: int = 0) -> list[list[T]]:
    """Shuffle ``items`` with a seeded generator and cut them into ``len(fractions)`` parts.

    Parameters
    ----------
    items : sequence
    fractions : sequence of float
        Non-negative, summing to 1.  Part ``k >= 1`` gets ``round(fractions[k] * n)`` items
        (at least ``min_size``); part 0 gets the rest.
    seed : int
    min_size : int
        Smallest size of the parts after the first.

    Returns
    -------
    parts : list of lists
        Disjoint, covering ``items``, each in the order of ``items``.
    """
    if abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"fractions must be non-negative and sum to 1, got {list(fractions)}")
    n = len(items)
    order = np.random.default_rng(seed).permutation(n)
    sizes = [max(min_size, int(round(f * n))) for f in fractions[1:]]
    sizes = [n - sum(sizes)] + sizes
    if sizes[0] < 0:
        raise ValueError(f"{n} items are too few for parts of at least {min_size}")
    cuts = np.cumsum([0] + sizes)
    return [[items[i] for i in sorted(order[a:b])] for a, b in zip(cuts[:-1], cuts[1:])]


def split_tracks(tracks: Sequence[Track], fraction: float, seed: int = 0
                 ) -> tuple[list[Track], list[Track]]:
    """Seeded split into (train, validation), ``fraction`` of the tracks (at least one) in
    validation."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    train, val = seeded_split(list(tracks), (1.0 - fraction, fraction), seed, min_size=1)
    return train, val


def file_digest(path: Path) -> str:
    """First 32 hex digits of the SHA-256 of a file's bytes (computed once per path, size,
    modification time and inode in a process: the feature cache and the resume state's
    track record ask for every track's)."""
    st = os.stat(path)
    return _file_digest(os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino)


@functools.lru_cache(maxsize=65536)
def _file_digest(path: str, size: int, mtime_ns: int, inode: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:32]


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a cache entry (``.npz``), read whole; the file is closed on any error
    (``np.load(path)`` leaves the file it opened unclosed when it is not a valid archive,
    and a ResourceWarning follows)."""
    with open(path, "rb") as handle, np.load(handle) as data:
        return {key: data[key] for key in data.files}


class FeatureCache:
    """Cache of :func:`~msaf_learned_ssm.features.compute_steps` per audio file.

    Parameters
    ----------
    cache_dir : path or None
        Where entries live; None disables caching.
    config : ModelConfig
        Its front-end settings are part of every key.
    """

    def __init__(self, cache_dir: Optional[PathLike], config: ModelConfig) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.config = config
        settings = json.dumps(self._key_settings(), sort_keys=True)
        self._settings_key = hashlib.sha256(settings.encode()).hexdigest()[:12]
        # The folder is made by the first write, so a run that fails before computing any
        # feature leaves nothing behind.

    def _key_settings(self) -> dict:
        """What, besides the audio, the cached values depend on."""
        return frontend_settings(self.config)

    def _compute(self, y: np.ndarray, n_threads: Optional[int] = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Values (n_mels, n) and their times (n,) for mono audio ``y``."""
        return compute_steps(y, self.config, n_threads)

    def path_for(self, audio: PathLike, augment: Optional[dict] = None) -> Path:
        """Cache file of ``audio`` (with augmentation parameters ``augment``, if any)."""
        assert self.cache_dir is not None
        key = f"{file_digest(Path(audio))}-{self._settings_key}"
        if augment is not None:
            drawn = json.dumps(augment, sort_keys=True).encode()
            key += "-aug" + hashlib.sha256(drawn).hexdigest()[:12]
        return self.cache_dir / f"{key}.npz"

    def _read(self, path: Path) -> Optional[tuple[np.ndarray, np.ndarray, float]]:
        try:
            data = load_npz(path)
            steps, times = data["steps"], data["step_times"]
            duration = float(data["duration"])
            if steps.ndim != 2 or steps.shape[0] != self.config.n_mels \
                    or times.shape != (steps.shape[1],) or not np.isfinite(steps).all():
                raise ValueError("unexpected shapes or values")
            return steps, times, duration
        except Exception as exc:  # any failure means a corrupt entry: rebuild it
            warnings.warn(f"{path}: corrupt feature cache entry ({exc}); recomputing")
            return None

    def _write(self, path: Path, steps: np.ndarray, times: np.ndarray, duration: float) -> None:
        with atomic_open(path, "wb") as handle:
            np.savez(handle, steps=steps, step_times=times, duration=duration)

    def steps(self, audio: PathLike, augment: Optional[dict] = None,
              n_threads: Optional[int] = None) -> tuple[np.ndarray, np.ndarray, float]:
        """(steps (n_mels, n_steps), step_times (n_steps,), duration s) of ``audio``.

        ``augment``: parameters of :func:`~msaf_learned_ssm_training.augment.draw_augmentation`
        applied to the waveform first (the duration is then the augmented audio's).
        ``n_threads``: threads for decoding and the STFT (None: all cores).
        """
        path = self.path_for(audio, augment) if self.cache_dir is not None else None
        if path is not None and path.is_file():
            cached = self._read(path)
            if cached is not None:
                return cached
        y = load_audio(audio, self.config.sample_rate, n_threads)
        if augment is not None:
            from .augment import apply_augmentation

            y, _ = apply_augmentation(y, self.config.sample_rate, augment)
        steps, times = self._compute(y, n_threads)
        duration = len(y) / self.config.sample_rate
        if path is not None:
            self._write(path, steps, times, duration)
        return steps, times, duration

    def patches(self, audio: PathLike, augment: Optional[dict] = None,
                n_threads: Optional[int] = None) -> Patches:
        """The model's input patches for ``audio`` (augmented by ``augment`` if given).

        For a beat-grid model (``config.patch_grid == "beat"``) they are centred on the
        beats of :meth:`beats`; an augmented draw's tempo change scales those beats (the
        tracker does not run again on every draw).
        """
        steps, times, duration = self.steps(audio, augment, n_threads)
        beats = None
        if self.config.patch_grid == "beat":
            beats = self.beats(audio, n_threads)
            if augment is not None and augment.get("tempo") is not None:
                beats = Beats(beats.times / float(augment["tempo"]), beats.positions)
        return patches_from_steps(steps, times, duration, self.config, beats)

    def beats(self, audio: PathLike, n_threads: Optional[int] = None) -> Beats:
        """Beats of ``audio`` by the package's shipped tracker, cached (keyed by the audio,
        the front-end and the tracker file's content)."""
        path = None
        if self.cache_dir is not None:
            path = self.cache_dir / (f"{file_digest(Path(audio))}-{self._settings_key}"
                                     f"-beats{_tracker_key()}.npz")
            if path.is_file():
                try:
                    data = load_npz(path)
                    times, positions = data["times"], data["positions"]
                    if times.ndim == 1 and positions.shape == times.shape \
                            and np.isfinite(times).all():
                        return Beats(times, positions)
                    raise ValueError("unexpected shapes or values")
                except Exception as exc:  # a corrupt entry: rebuild it
                    warnings.warn(f"{path}: corrupt beat cache entry ({exc}); recomputing")
        beats = _track_beats(audio, n_threads)
        if path is not None:
            with atomic_open(path, "wb") as handle:
                np.savez(handle, times=beats.times, positions=beats.positions)
        return beats


@functools.lru_cache(maxsize=1)
def _tracker_key() -> str:
    """Short digest of the shipped beat tracker's file and the decoder's version (part of
    the beat cache's keys: either changes the beats)."""
    from msaf_learned_ssm.beats import DECODER_VERSION, DEFAULT_BEAT_MODEL

    return f"{file_digest(DEFAULT_BEAT_MODEL)[:12]}d{DECODER_VERSION}"


def _track_beats(audio: PathLike, n_threads: Optional[int]) -> Beats:
    """The shipped tracker's beats of an audio file (on the tracker's own front-end)."""
    from msaf_learned_ssm.beats import shared_tracker

    tracker = shared_tracker("cpu")
    y = load_audio(audio, tracker.config.model_config.sample_rate, n_threads)
    return tracker.track(y, n_threads)


def default_cache_dir(corpus_dir: PathLike) -> Path:
    """Feature cache folder for a corpus: ``CORPUS/.ssm_cache``, or, when the corpus is not
    writable (a read-only dataset), the user cache folder
    (``platformdirs.user_cache_dir("msaf-learned-ssm")/features``, e.g.
    ``~/.cache/msaf-learned-ssm/features``).  Entries are keyed by audio content, so one
    folder serves any number of corpora."""
    own = Path(corpus_dir) / ".ssm_cache"
    if own.is_dir() and os.access(own, os.W_OK):
        return own
    if not own.exists() and os.access(corpus_dir, os.W_OK):
        return own
    import platformdirs

    return Path(platformdirs.user_cache_dir("msaf-learned-ssm")) / "features"


__all__ = ["FeatureCache", "Track", "default_cache_dir", "file_digest", "find_tracks", "load_npz",
           "find_unlabeled", "read_id_list", "seeded_split", "split_tracks"]
