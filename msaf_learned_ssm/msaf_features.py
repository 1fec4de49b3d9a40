"""A light MSAF feature, ``feature="learned_ssm"``, for runs of the learned_ssm algorithm.

MSAF computes a feature object for every track before calling a Segmenter; the
learned_ssm algorithm uses only its length and time stamps. This feature is the frame
energy (RMS, one value per MSAF frame), far cheaper than PCP or MFCC; with
``framesync=True`` MSAF's beat tracking (HPSS + beat tracker) is skipped too (the cached
feature file then has no beats, and a later beat-synchronous run recomputes them).
"""

from __future__ import annotations

import librosa
import numpy as np
from msaf import config as msaf_config
from msaf.base import Features, FeatureTypes
from msaf.exceptions import FeatureParamsError


class LearnedSSMGrid(Features):
    """Frame-wise RMS energy on MSAF's frame grid (shape (N, 1))."""

    def __init__(self, file_struct, feat_type, sr=msaf_config.sample_rate,
                 hop_length=msaf_config.hop_size):
        super().__init__(file_struct=file_struct, sr=sr, hop_length=hop_length,
                         feat_type=feat_type)

    @classmethod
    def get_id(cls) -> str:
        return "learned_ssm"

    def compute_features(self) -> np.ndarray:
        rms = librosa.feature.rms(y=self._audio, frame_length=2 * self.hop_length,
                                  hop_length=self.hop_length)
        return rms.T.astype(np.float64)

    def estimate_beats(self):
        # Frame-synchronous runs never use beats: skip HPSS and beat tracking.
        if self.feat_type is FeatureTypes.framesync:
            return np.zeros(0), np.zeros(0, dtype=int)
        return super().estimate_beats()

    def read_features(self, tol=1e-3):
        super().read_features(tol)
        # A cache written by a frame-synchronous run has no beats: recompute for beats.
        if self.feat_type is not FeatureTypes.framesync and self._est_beats_times is not None \
                and len(self._est_beats_times) == 0:
            raise FeatureParamsError(f"{self.file_struct.features_file} has no beats")
