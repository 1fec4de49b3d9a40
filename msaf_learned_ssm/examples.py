"""Synthetic music with known structure, for the demo, the tests and the benchmarks.

Each section label gets its own timbre (pitches, brightness, rhythm), so the section
changes are the planted boundaries.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _section_audio(label_index: int, duration: float, sr: int, rng: np.random.Generator
                   ) -> np.ndarray:
    t = np.arange(int(round(duration * sr))) / sr
    # Distinct material per label: root pitch, harmonic roll-off, note rate.
    roots = [110.0, 146.8, 196.0, 261.6, 329.6, 92.5, 123.5, 174.6]
    root = roots[label_index % len(roots)]
    rolloff = 0.35 + 0.12 * (label_index % 5)
    rate = [2.0, 3.0, 4.0, 1.5, 6.0][label_index % 5]
    chord = [1.0, 1.25 if label_index % 2 else 1.2, 1.5]
    y = np.zeros_like(t)
    for ratio in chord:
        for h in range(1, 9):
            y += rolloff ** h * np.sin(2 * np.pi * root * ratio * h * t + rng.uniform(0, 2 * np.pi))
    envelope = 0.55 + 0.45 * np.maximum(0, np.sin(2 * np.pi * rate * t)) ** 4
    noise = rng.standard_normal(len(t)) * (0.02 + 0.03 * (label_index % 3))
    return (y * envelope + noise).astype(np.float32)


def synthesize_sections(labels: Sequence[str], section_sec: float | Sequence[float] = 12.0,
                        sr: int = 22050, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A mono signal made of sections whose timbre depends on their label.

    Parameters
    ----------
    labels : sequence of str
        Label of each section, e.g. ``"ABAB"`` or ``["verse", "chorus"]``; equal labels
        get the same material.
    section_sec : float or sequence of float
        Duration of each section (s).
    sr : int
        Sample rate (Hz).
    seed : int

    Returns
    -------
    y : np.ndarray, shape (n_samples,), float32
        Peak-normalised to 0.8.
    boundaries : np.ndarray, shape (len(labels) + 1,)
        Section boundaries (s), from 0 to the duration.
    """
    labels = list(labels)
    durations = np.broadcast_to(np.asarray(section_sec, dtype=float), (len(labels),))
    rng = np.random.default_rng(seed)
    index = {label: i for i, label in enumerate(dict.fromkeys(labels))}
    parts = [_section_audio(index[label], d, sr, rng) for label, d in zip(labels, durations)]
    y = np.concatenate(parts)
    y *= 0.8 / max(float(np.abs(y).max()), 1e-9)
    lengths = np.array([len(p) for p in parts])
    boundaries = np.concatenate([[0], np.cumsum(lengths)]) / sr
    return y.astype(np.float32), boundaries


def write_synthetic_corpus(root, n_tracks: int = 4, section_sec: float = 12.0, seed: int = 0):
    """A small MSAF-layout corpus of synthetic tracks with their reference JAMS.

    Parameters
    ----------
    root : path
        Folder to create ``audio/`` (WAV) and ``references/`` (JAMS, ``segment_open``) in.
    n_tracks : int
        Tracks ``t0 ... t{n-1}``, with forms cycling through ABAB, ABCA, AABB, ABCB...
    section_sec : float
        Section duration (s).
    seed : int

    Returns
    -------
    pathlib.Path
        ``root``.
    """
    from pathlib import Path

    import jams
    import soundfile as sf

    root = Path(root)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    (root / "references").mkdir(exist_ok=True)
    forms = ["ABAB", "ABCA", "AABB", "ABCB", "BACA", "CABA"]
    for k in range(n_tracks):
        form = forms[k % len(forms)]
        y, bounds = synthesize_sections(form, section_sec, seed=seed + k)
        sf.write(root / "audio" / f"t{k}.wav", y, 22050)
        jam = jams.JAMS()
        jam.file_metadata.duration = float(bounds[-1])
        ann = jams.Annotation(namespace="segment_open", duration=float(bounds[-1]))
        for start, end, label in zip(bounds[:-1], bounds[1:], form):
            ann.append(time=float(start), duration=float(end - start), value=label)
        jam.annotations.append(ann)
        jam.save(str(root / "references" / f"t{k}.jams"))
    return root
