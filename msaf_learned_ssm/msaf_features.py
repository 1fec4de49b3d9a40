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
"""

from __future__ import annotations

import librosa
import numpy as np
from msaf import config as msaf_config
from msaf.base import Features

from .audio import load_audio
from .errors import AudioLoadError


class LearnedSSMGrid(Features):
    """Frame-wise RMS energy on MSAF's frame grid (shape (N, 1))."""

    def __init__(self, file_struct, feat_type, sr=msaf_config.sample_rate,
                 hop_length=msaf_config.hop_size):
        super().__init__(file_struct=file_struct, sr=sr, hop_length=hop_length,
                         feat_type=feat_type)

    @classmethod
    def get_id(cls) -> str:
        return "learned_ssm"

    def _compute_all_features(self) -> None:
        # MSAF decodes the audio with librosa.load; on a bad file that raises audioread's
        # NoBackendError (no message) or librosa's ParameterError (NaN samples). Ask this
        # package's loader what is wrong so that the caller gets an AudioLoadError naming
        # the file; this costs nothing on good files. A file the loader accepts re-raises
        # MSAF's own error unchanged.
        try:
            super()._compute_all_features()
        except Exception:
            load_audio(self.file_struct.audio_file, self.sr)
            raise

    def estimate_beats(self) -> tuple[np.ndarray, np.ndarray]:
        """Beat times (s) and MSAF frame indices from the package's beat tracker."""
        from .beats import shared_tracker

        tracker = shared_tracker()
        y = self._audio
        if self.sr != tracker.config.model_config.sample_rate:
            y = librosa.resample(y, orig_sr=self.sr,
                                 target_sr=tracker.config.model_config.sample_rate)
        times = tracker.track(np.asarray(y, dtype=np.float32)).times
        frames = librosa.time_to_frames(times, sr=self.sr, hop_length=self.hop_length)
        # As MSAF's estimate_beats: no beat at frame 0 (MSAF adds the track start itself).
        keep = frames > 0
        return times[keep], frames[keep]

    def compute_features(self) -> np.ndarray:
        if self._audio is None or len(self._audio) == 0:
            # MSAF would go on and return an empty segmentation; a 0-sample file is an error.
            raise AudioLoadError(f"{self.file_struct.audio_file}: the file decodes to zero "
                                 "samples")
        rms = librosa.feature.rms(y=self._audio, frame_length=2 * self.hop_length,
                                  hop_length=self.hop_length)
        return rms.T.astype(np.float64)
