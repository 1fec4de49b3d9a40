"""Mixed precision (autocast) stays within the stated tolerance of float32 (on CPU)."""

from __future__ import annotations

import numpy as np
import pytest

from msaf_learned_ssm.errors import ConfigError
from msaf_learned_ssm.inference import MIXED_PRECISION_TOLERANCE, Analyzer


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_novelty_and_boundaries_match_float32(planted_track, precision):
    path, _ = planted_track
    reference = Analyzer("default", "cpu").analyze(path)
    mixed = Analyzer("default", "cpu", precision=precision).analyze(path)
    assert np.abs(mixed.novelty - reference.novelty).max() <= MIXED_PRECISION_TOLERANCE
    assert mixed.boundaries.shape == reference.boundaries.shape
    hop = Analyzer("default", "cpu").config.patch_hop_sec
    assert np.abs(mixed.boundaries - reference.boundaries).max() <= hop + 1e-9


def test_unknown_precision_is_refused():
    with pytest.raises(ConfigError, match="precision must be one of"):
        Analyzer("default", "cpu", precision="int8")
