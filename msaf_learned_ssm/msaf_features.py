"""A light MSAF feature, ``feature="learned_ssm"``, for runs of the learned_ssm algorithm.

MSAF computes a feature object for every track before calling a Segmenter; the
learned_ssm algorithm uses only its length and time stamps. This feature is the frame
energy (RMS, one value per MSAF frame), far cheaper than PCP or MFCC.

Beats: MSAF tracks beats for every track, even with ``framesync=True`` (the base class
stores them in the per-track feature cache that all features share, and a file written
without beats would break the next beat-synchronous run of any feature on that track).
MSAF's own tracker (HPSS, then ``librosa.beat.beat_track``) is most of the cost of a cold
run; this feature gives MSAF the package's tracker instead (:mod:`msaf_learned_ssm.beats`,
a small network on the same log-mel), so the shared cache holds valid beats at a fraction
of the cost (``bench/results/speed.md``).

Bad audio: with this feature, a file MSAF cannot decode, with no samples or with NaN /
infinite samples raises :class:`~msaf_learned_ssm.errors.AudioLoadError` (with MSAF's own
features it raises MSAF's, librosa's or audioread's error, before this plugin runs).

Features of another file: MSAF names a track's features file after the audio file's *name*
(``features/NAME.json`` beside the dataset, or in the working directory for a single
file) and reuses it when the duration matches, so two recordings of one name and length
shared beats and features. :func:`install_feature_identity` (run by
:func:`~msaf_learned_ssm.registration.register`) makes every MSAF feature record the
audio's content hash in that file's globals (``audio_sha256``) and treat a file recorded
for other audio as absent: the features are computed again for this audio. A file
written without the hash (before this plugin, or by plain MSAF) is recomputed when the
audio file it names is another existing file.
"""

from __future__ import annotations

import json
import os
from typing import Optional

import numpy as np
from msaf import config as msaf_config
from msaf.base import Features, FeatureTypes

from .audio import load_audio
from .errors import AudioLoadError
from .features import sync_frames
from .fileio import atomic_write_text, audio_identity

#: Key of an MSAF features file's ``globals``: the SHA-256 of the audio it describes.
AUDIO_HASH_KEY = "audio_sha256"


def other_audio(features_file: Optional[str], audio_file: str) -> Optional[str]:
    """Why MSAF's features file describes audio other than ``audio_file`` (None when it
    describes this audio, does not exist, or cannot tell).

    Compares the content hash recorded in the file's globals; without one, the audio file
    the globals name (another existing file is other audio).
    """
    try:
        with open(features_file, encoding="utf-8") as handle:
            recorded = json.load(handle)["globals"]
        current = audio_identity(audio_file)["audio_sha256"]
    except (OSError, TypeError, ValueError, KeyError):
        return None
    if recorded.get(AUDIO_HASH_KEY) is not None:
        if recorded[AUDIO_HASH_KEY] == current:
            return None
        return (f"recorded for audio of sha256 {str(recorded[AUDIO_HASH_KEY])[:12]}, this "
                f"file's is {current[:12]}")
    named = recorded.get("audio_file")
    try:
        if named and os.path.isfile(named) and not os.path.samefile(named, audio_file):
            return f"written for {named}"
    except OSError:
        return None
    return None


def _stamp_audio_hash(features_file: str, audio_file: str) -> None:
    """Record the audio's content hash in the features file's globals (atomically)."""
    try:
        with open(features_file, encoding="utf-8") as handle:
            feats = json.load(handle)
        digest = audio_identity(audio_file)["audio_sha256"]
    except (OSError, ValueError):
        return
    if isinstance(feats.get("globals"), dict) and feats["globals"].get(AUDIO_HASH_KEY) != digest:
        feats["globals"][AUDIO_HASH_KEY] = digest
        atomic_write_text(features_file, json.dumps(feats, indent=2))


def install_feature_identity() -> None:
    """Make MSAF's features files keyed on the audio's content (idempotent).

    Wraps ``msaf.base.Features.read_features`` (a file recorded for other audio raises
    MSAF's ``FeaturesNotFound``, so MSAF computes the features again and rewrites the
    file) and ``write_features`` (the hash is recorded). All MSAF features inherit both.
    """
    if getattr(Features.read_features, "_learned_ssm", False):
        return
    from msaf.exceptions import FeaturesNotFound

    read, write = Features.read_features, Features.write_features

    def read_features(self, tol=1e-3):
        why = other_audio(self.file_struct.features_file, self.file_struct.audio_file)
        if why is not None:
            raise FeaturesNotFound(f"{self.file_struct.features_file} describes another "
                                   f"audio file ({why})")
        return read(self, tol)

    def write_features(self):
        write(self)
        _stamp_audio_hash(self.file_struct.features_file, self.file_struct.audio_file)

    read_features._learned_ssm = write_features._learned_ssm = True
    Features.read_features, Features.write_features = read_features, write_features


class LearnedSSMGrid(Features):
    """Frame-wise RMS energy on MSAF's frame grid (shape (N, 1)).

    Computed without librosa (whose numba kernels take seconds to compile in a fresh
    process): the audio through this package's loader, RMS, frame times and the
    beat-synchronous average in numpy, the beats from the package's tracker. The values
    equal MSAF's way of computing them (``librosa.load``, ``librosa.feature.rms``,
    ``librosa.util.sync``; ``tests/test_msaf_plugin.py``).
    """

    def __init__(self, file_struct, feat_type, sr=msaf_config.sample_rate,
                 hop_length=msaf_config.hop_size):
        super().__init__(file_struct=file_struct, sr=sr, hop_length=hop_length,
                         feat_type=feat_type)

    @classmethod
    def get_id(cls) -> str:
        return "learned_ssm"

    def _compute_all_features(self) -> None:
        # As msaf.base.Features._compute_all_features, with the package's loader (a bad
        # file raises AudioLoadError naming it, where MSAF's path raises audioread's
        # NoBackendError without a message, or librosa's ParameterError on NaN samples).
        self._audio = load_audio(self.file_struct.audio_file, self.sr)
        self.dur = len(self._audio) / float(self.sr)
        feat_type = self.feat_type
        self.feat_type = FeatureTypes.framesync
        self._framesync_features = self.compute_features()
        self.feat_type = feat_type
        self._compute_framesync_times()
        self._est_beats_times, self._est_beats_frames = self.estimate_beats()
        self._ann_beats_times, self._ann_beats_frames = self.read_ann_beats()
        self._est_beatsync_features, self._est_beatsync_times = \
            self.compute_beat_sync_features(self._est_beats_frames, self._est_beats_times, True)
        self._ann_beatsync_features, self._ann_beatsync_times = \
            self.compute_beat_sync_features(self._ann_beats_frames, self._ann_beats_times, True)

    def _compute_framesync_times(self) -> None:
        n = self._framesync_features.shape[0]
        self._framesync_times = np.arange(n) * self.hop_length / float(self.sr)

    def _time_to_frames(self, times: np.ndarray) -> np.ndarray:
        """MSAF frame index of each time (s), as ``librosa.time_to_frames``: samples
        truncated, then floor-divided by the hop."""
        return (np.asarray(times, dtype=float) * self.sr).astype(int) // self.hop_length

    def _shared_beats(self) -> Optional[np.ndarray]:
        """The beat times already in this track's MSAF features file (written with another
        feature), when that file describes this audio (content hash, duration and hop);
        else None."""
        path = getattr(self.file_struct, "features_file", None)
        if other_audio(path, self.file_struct.audio_file) is not None:
            return None  # beats of another recording
        try:
            with open(path, encoding="utf-8") as handle:
                feats = json.load(handle)
            if abs(float(feats["globals"]["dur"]) - self.dur) > 1e-3 * max(self.dur, 1.0) \
                    or int(feats["globals"]["hop_length"]) != self.hop_length:
                return None
            return np.asarray(feats["est_beats"], dtype=float)
        except (OSError, TypeError, ValueError, KeyError):
            return None

    def read_features(self, tol: float = 1e-3) -> None:
        """MSAF's reader; then the beat-synchronous frames are recomputed when the file's
        beats changed since this feature was written (another feature, computed later with
        MSAF's own tracker, rewrote the beats that all features share)."""
        super().read_features(tol)
        feats, times = self._est_beatsync_features, self._est_beatsync_times
        if feats is not None and times is not None and len(times) != feats.shape[0]:
            frames = self._time_to_frames(self._est_beats_times)
            self._est_beatsync_features, self._est_beatsync_times = \
                self.compute_beat_sync_features(frames, self._est_beats_times, True)

    def estimate_beats(self) -> tuple[np.ndarray, np.ndarray]:
        """Beat times (s) and MSAF frame indices: those already in the track's features
        file if another feature wrote them (all features of a track share one beat grid),
        else from the package's beat tracker."""
        from .audio import resample
        from .beats import shared_tracker

        shared = self._shared_beats()
        if shared is not None:
            frames = self._time_to_frames(shared)
            keep = frames > 0
            return shared[keep], frames[keep]

        tracker = shared_tracker()
        y = self._audio
        target = tracker.config.model_config.sample_rate
        if self.sr != target:
            y = resample(y, self.sr, target)
        times = tracker.track(np.asarray(y, dtype=np.float32)).times
        frames = self._time_to_frames(times)
        # As MSAF's estimate_beats: no beat at frame 0 (MSAF adds the track start itself).
        keep = frames > 0
        return times[keep], frames[keep]

    def compute_beat_sync_features(self, beat_frames, beat_times, pad):
        """Mean of the frames between consecutive beats (``librosa.util.sync`` with
        ``np.mean``), and the beat times (the track end appended when padded)."""
        if beat_frames is None:
            return None, None
        feats = self._framesync_features
        n = feats.shape[0]
        edges = np.unique(np.clip(np.asarray(beat_frames, dtype=int), 0, n))
        if pad:
            edges = np.union1d(edges, [0, n])
        synced = sync_frames(feats, edges)
        times = np.copy(beat_times)
        if times.shape[0] != synced.shape[0]:
            times = np.concatenate((times, [(n - 1) * self.hop_length / float(self.sr)]))
        return synced, times

    def compute_features(self) -> np.ndarray:
        if self._audio is None or len(self._audio) == 0:
            # MSAF would go on and return an empty segmentation; a 0-sample file is an error.
            raise AudioLoadError(f"{self.file_struct.audio_file}: the file decodes to zero "
                                 "samples")
        return frame_rms(self._audio, 2 * self.hop_length, self.hop_length)[:, None]


def frame_rms(y: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """``librosa.feature.rms(y=y, frame_length=..., hop_length=...)[0]`` in numpy, float64.

    Centred frames (``frame_length // 2`` zeros on each side), one every ``hop_length``
    samples: shape ``(1 + len(y) // hop_length,)``.
    """
    y = np.pad(np.asarray(y, dtype=np.float64), frame_length // 2)
    n = 1 + (len(y) - frame_length) // hop_length
    frames = np.lib.stride_tricks.sliding_window_view(y, frame_length)[::hop_length][:n]
    return np.sqrt(np.mean(frames ** 2, axis=1))
