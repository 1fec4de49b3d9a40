"""Property tests of peak picking: for any finite novelty curve (constant and all-zero
curves included), peaks are sorted, at least ``round(min_distance_sec / hop)`` apart, and
the boundaries are sorted, unique and within [0, duration].

(Round-trip properties of the JAMS adapters are in ``test_jams_adapters.py``.)"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from msaf_learned_ssm.config import PeakConfig
from msaf_learned_ssm.peaks import boundary_times, pick_peaks

HOP = 0.4644

finite = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def curves(draw):
    n = draw(st.integers(0, 400))
    kind = draw(st.sampled_from(["any", "zero", "constant", "probability", "plateaus"]))
    if kind == "zero":
        return np.zeros(n)
    if kind == "constant":
        return np.full(n, draw(finite))
    if kind == "plateaus":
        levels = draw(st.lists(st.sampled_from([0.0, 0.1, 0.5, 1.0]), min_size=1, max_size=8))
        return np.repeat(levels, -(-n // len(levels)))[:n] if n else np.zeros(0)
    elements = st.floats(0.0, 1.0) if kind == "probability" else finite
    return np.array(draw(st.lists(elements, min_size=n, max_size=n)), dtype=float)


peak_configs = st.builds(PeakConfig, mean_half_sec=st.floats(0.0, 30.0),
                         min_distance_sec=st.floats(0.0, 30.0),
                         threshold=st.floats(0.0, 3.0))


@settings(max_examples=300, deadline=None)
@given(curves(), peak_configs, st.floats(0.05, 2.0))
def test_peaks_sorted_and_apart(novelty, config, hop):
    peaks = pick_peaks(novelty, hop, config)
    assert peaks.dtype.kind == "i"
    assert np.all((peaks >= 0) & (peaks < len(novelty)))
    gap = max(1, int(np.round(config.min_distance_sec / hop)))
    assert np.all(np.diff(peaks) >= gap)


@settings(max_examples=300, deadline=None)
@given(curves(), peak_configs, st.floats(0.0, 10.0))
def test_boundaries_sorted_within_duration(novelty, config, tail):
    times = (np.arange(len(novelty)) + 0.5) * HOP
    duration = float(len(novelty) * HOP + tail)
    if duration <= 0:
        duration = tail or 1.0
    peaks = pick_peaks(novelty, HOP, config)
    bounds = boundary_times(peaks, times, duration)
    assert bounds[0] == 0.0 and bounds[-1] == duration
    assert np.all(np.diff(bounds) > 0)
    assert np.all((bounds >= 0) & (bounds <= duration))
    assert len(bounds) == len(set(times[peaks]) - {0.0, duration}) + 2


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 300), finite)
def test_flat_curves_have_no_peaks(n, value):
    assert len(pick_peaks(np.full(n, value), HOP)) == 0
    assert len(pick_peaks(np.zeros(n), HOP)) == 0
