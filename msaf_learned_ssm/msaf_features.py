"""A light MSAF feature, ``feature="learned_ssm"``, for runs of the learned_ssm algorithm.

MSAF computes a feature object for every track before calling a Segmenter; the
learned_ssm algorithm uses only its length and time stamps. This feature is the frame
energy (RMS, one value per MSAF frame), far cheaper than PCP or MFCC.

MSAF's beat tracking (HPSS + beat tracker) still runs, even with ``framesync=True``: the
base class stores the beats in the per-track feature cache that all features share, and a
file written without beats would break the next beat-synchronous run of any feature on
that track. So that part of MSAF's work cannot be avoided from a plugin.

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

    def compute_features(self) -> np.ndarray:
        if self._audio is None or len(self._audio) == 0:
            # MSAF would go on and return an empty segmentation; a 0-sample file is an error.
            raise AudioLoadError(f"{self.file_struct.audio_file}: the file decodes to zero "
                                 "samples")
        rms = librosa.feature.rms(y=self._audio, frame_length=2 * self.hop_length,
                                  hop_length=self.hop_length)
        return rms.T.astype(np.float64)
