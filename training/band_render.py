"""Band renders of POP909: five stems (melody, bridge, piano, bass, drums) synthesised apart and mixed.

The piano renders of :mod:`msaf_learned_ssm_training.build_pop909` sound like nothing users segment.  A band
render adds the bass and drums of :mod:`msaf_learned_ssm_training.arrangement`, voices the melody with lead and
vocal-like programs (with vibrato and phrase dynamics), draws the bridge and piano parts from
wider program sets, takes each part's soundfont from those installed (one per song, some parts
from another), and mixes the separately rendered stems as an engineer would: levels per stem,
chorus on some, one reverb fed by per-stem sends, bus compression and a limiter.

Every choice comes from generators seeded by ``(seed, song id)`` and is returned as a JSON-ready
record, stored in the reference JAMS by the builder.  Effects are Spotify's ``pedalboard``
(a ``[train]`` dependency).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

import mido
import numpy as np

from .arrangement import (DRUM_CHANNEL, Note, bass_notes, drum_notes, notes_to_midi,
                          plan_arrangement, track_messages)

__all__ = ["BAND_BUILDER_VERSION", "BAND_PARTS", "BAND_PROGRAM_POOLS", "band_rng",
           "choose_band_rendering", "band_stem_midis", "mix_stems"]

#: Bump when the band rendering changes, so a resumed build re-renders older songs.
BAND_BUILDER_VERSION = 1

#: Parts in mixing order; the first three are POP909's MIDI tracks.
BAND_PARTS = ("melody", "bridge", "piano", "bass", "drums")

#: GM programs (0-based) per part.  The melody is what a singer or lead player carries.
BAND_PROGRAM_POOLS: Dict[str, Dict[int, str]] = {
    "melody": {
        52: "Choir Aahs", 53: "Voice Oohs", 54: "Synth Voice", 85: "Lead 6 (voice)",
        64: "Soprano Sax", 65: "Alto Sax", 66: "Tenor Sax", 56: "Trumpet", 73: "Flute",
        80: "Lead 1 (square)", 81: "Lead 2 (sawtooth)", 87: "Lead 8 (bass + lead)",
        26: "Electric Guitar (jazz)", 27: "Electric Guitar (clean)",
        29: "Overdriven Guitar", 30: "Distortion Guitar", 22: "Harmonica", 40: "Violin",
    },
    "bridge": {
        48: "String Ensemble 1", 49: "String Ensemble 2", 50: "SynthStrings 1",
        89: "Pad 2 (warm)", 90: "Pad 3 (polysynth)", 91: "Pad 4 (choir)", 94: "Pad 7 (halo)",
        95: "Pad 8 (sweep)", 16: "Drawbar Organ", 17: "Percussive Organ", 18: "Rock Organ",
        25: "Acoustic Guitar (steel)", 27: "Electric Guitar (clean)", 28: "Electric Guitar (muted)",
        29: "Overdriven Guitar", 4: "Electric Piano 1", 5: "Electric Piano 2", 61: "Brass Section",
        11: "Vibraphone",
    },
    "piano": {
        0: "Acoustic Grand Piano", 1: "Bright Acoustic Piano", 2: "Electric Grand Piano",
        4: "Electric Piano 1", 5: "Electric Piano 2", 7: "Clavinet", 16: "Drawbar Organ",
        18: "Rock Organ", 24: "Acoustic Guitar (nylon)", 25: "Acoustic Guitar (steel)",
        27: "Electric Guitar (clean)", 28: "Electric Guitar (muted)", 46: "Orchestral Harp",
        88: "Pad 1 (new age)", 48: "String Ensemble 1",
    },
    "bass": {
        32: "Acoustic Bass", 33: "Electric Bass (finger)", 34: "Electric Bass (pick)",
        35: "Fretless Bass", 36: "Slap Bass 1", 38: "Synth Bass 1", 39: "Synth Bass 2",
    },
    "drums": {0: "Standard Kit"},
}

#: Stem level (dB, uniform range) relative to the melody at 0 dB, after each stem is brought
#: to the same loudness: a lead on top, drums and bass close, the accompaniment behind.
STEM_LEVEL_DB: Dict[str, tuple] = {
    "melody": (-1.0, 2.0), "bridge": (-12.0, -4.0), "piano": (-9.0, -2.0),
    "bass": (-6.0, 0.0), "drums": (-5.0, 1.0),
}
#: Reverb send (wet fraction) per stem: low for bass and drums, as in a pop mix.
REVERB_SEND: Dict[str, tuple] = {
    "melody": (0.1, 0.5), "bridge": (0.2, 0.6), "piano": (0.1, 0.4),
    "bass": (0.0, 0.05), "drums": (0.02, 0.2),
}
#: Probability that a part comes from another soundfont than the song's main one.
OTHER_SOUNDFONT_P = 0.25
#: Probability of chorus on a stem (never on bass and drums).
CHORUS_P = 0.35
#: Probability that a part sits out the whole song (bridge only: many records have none).
BRIDGE_ABSENT_P = 0.15

#: RMS level (dBFS) each stem is normalised to before its level is applied.
STEM_RMS_DB = -20.0


def band_rng(song_id: str, seed: int, stream: int) -> np.random.Generator:
    """Generator for one song and one purpose (``stream`` 0: choices, 1: plan, 2: humanising).

    Separate streams keep the plan and humanisation fixed when a mixing range changes.
    """
    key = zlib.crc32(song_id.encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence([int(seed), key, 909, int(stream)]))


def _uniform(rng: np.random.Generator, lo_hi: tuple, digits: int = 2) -> float:
    # Rounded so that the record survives a JSON round trip exactly (resume compares them).
    return round(float(rng.uniform(*lo_hi)), digits)


def choose_band_rendering(song_id: str, seed: int, soundfonts: Sequence[str]) -> Dict[str, Any]:
    """Draw the sound of one band render: programs, soundfonts, levels and effects.

    Parameters
    ----------
    song_id : str
        POP909 id.
    seed : int
        Corpus seed.
    soundfonts : sequence of str
        Soundfont file names available (at least one).

    Returns
    -------
    choices : dict
        JSON-ready: per part ``programs``, ``program_names``, ``soundfonts``, ``level_db``,
        ``reverb_send``, ``chorus`` (None or {rate_hz, depth, mix}); ``absent`` parts;
        ``melody_vibrato`` (CC1 value), ``reverb`` (room_size, damping), ``compressor``
        (threshold_db, ratio), ``limiter_db``, ``gain_db``.
    """
    if not soundfonts:
        raise ValueError("at least one soundfont is needed")
    rng = band_rng(song_id, seed, 0)
    names = [Path(s).name for s in soundfonts]
    main = names[int(rng.integers(len(names)))]
    out: Dict[str, Any] = {"programs": {}, "program_names": {}, "soundfonts": {},
                           "level_db": {}, "reverb_send": {}, "chorus": {}}
    for part in BAND_PARTS:
        pool = sorted(BAND_PROGRAM_POOLS[part])
        program = int(pool[int(rng.integers(len(pool)))])
        out["programs"][part] = program
        out["program_names"][part] = BAND_PROGRAM_POOLS[part][program]
        other = names[int(rng.integers(len(names)))]
        out["soundfonts"][part] = other if rng.uniform() < OTHER_SOUNDFONT_P else main
        out["level_db"][part] = _uniform(rng, STEM_LEVEL_DB[part], 1)
        out["reverb_send"][part] = _uniform(rng, REVERB_SEND[part])
        chorus = part not in ("bass", "drums") and rng.uniform() < CHORUS_P
        params = {"rate_hz": _uniform(rng, (0.3, 1.5)), "depth": _uniform(rng, (0.1, 0.4)),
                  "mix": _uniform(rng, (0.2, 0.5))}
        out["chorus"][part] = params if chorus else None
    out["absent"] = ["bridge"] if rng.uniform() < BRIDGE_ABSENT_P else []
    out["melody_vibrato"] = int(rng.integers(0, 50))
    out["reverb"] = {"room_size": _uniform(rng, (0.2, 0.85)), "damping": _uniform(rng, (0.3, 0.7))}
    out["compressor"] = {"threshold_db": _uniform(rng, (-24.0, -10.0), 1),
                         "ratio": _uniform(rng, (1.5, 4.0), 1)}
    out["limiter_db"] = _uniform(rng, (-3.0, -0.5), 1)
    out["gain_db"] = _uniform(rng, (-12.0, 0.0), 1)
    return out


def _melody_expression(n_bars: int, bar_times: np.ndarray, rng: np.random.Generator
                       ) -> List[tuple]:
    """Phrase dynamics of the lead: CC11 (expression) once a bar, a slow random walk."""
    level = 100.0
    out = []
    for t in bar_times[:n_bars]:
        level = float(np.clip(level + rng.normal(0, 6), 70, 127))
        out.append((float(t), 11, int(round(level))))
    return out


def band_stem_midis(source: mido.MidiFile, grid: Mapping[str, Any],
                    chords: Sequence[tuple], choices: Mapping[str, Any], song_id: str, seed: int,
                    cues: str = "labelled") -> tuple:
    """Build the MIDI file of every stem of one song.

    Parameters
    ----------
    source : mido.MidiFile
        The POP909 MIDI (tracks MELODY, BRIDGE, PIANO).
    grid : mapping
        :func:`msaf_learned_ssm_jams.pop909.pop909_bar_grid`.
    chords : sequence of (start_s, end_s, label)
        :func:`msaf_learned_ssm_jams.pop909.read_pop909_chords`.
    choices : mapping
        :func:`choose_band_rendering`.
    song_id, seed
        For the arrangement's generators.
    cues : {"labelled", "decorrelated"}
        How the arrangement places its section cues
        (:func:`msaf_learned_ssm_training.arrangement.plan_arrangement`).

    Returns
    -------
    stems : dict
        Part -> mido.MidiFile, absent parts left out.
    plan : dict
        The arrangement drawn (:func:`msaf_learned_ssm_training.arrangement.plan_arrangement`).
    """
    beats, firsts = np.asarray(grid["beat_times"]), np.asarray(grid["bar_start_beats"])
    labels, bpb = grid["bar_labels"], int(grid["beats_per_bar"])
    plan = plan_arrangement(labels, grid["phrase_start"], grid["phrase_end"], bpb,
                            band_rng(song_id, seed, 1), cues=cues)
    human = band_rng(song_id, seed, 2)
    programs = choices["programs"]
    stems: Dict[str, mido.MidiFile] = {}
    for part, track in (("melody", "MELODY"), ("bridge", "BRIDGE"), ("piano", "PIANO")):
        if part in choices["absent"]:
            continue
        messages = track_messages(source, track)
        if not messages:
            continue
        channel = messages[0][1].channel
        controls: List[tuple] = []
        if part == "melody":
            controls = [(0.0, 1, choices["melody_vibrato"])]
            controls += _melody_expression(len(firsts), beats[firsts], human)
        stems[part] = notes_to_midi([], channel, programs[part], controls, messages)
    bass: List[Note] = bass_notes(plan, beats, firsts, labels, bpb, chords, human)
    stems["bass"] = notes_to_midi(bass, channel=0, program=programs["bass"])
    drums: List[Note] = drum_notes(plan, beats, firsts, labels, bpb, human)
    stems["drums"] = notes_to_midi(drums, channel=DRUM_CHANNEL, program=None)
    return stems, plan


def _rms_db(y: np.ndarray) -> float:
    """RMS (dBFS) over the louder half of 100 ms blocks, so silent sections do not count."""
    block = 2205
    n = (y.shape[-1] // block) * block
    if n == 0:
        return -120.0
    power = (y[..., :n].reshape(-1, block) ** 2).mean(axis=1)
    loud = np.sort(power)[len(power) // 2:]
    return float(10 * np.log10(max(loud.mean(), 1e-12)))


def mix_stems(stems: Mapping[str, np.ndarray], choices: Mapping[str, Any], sample_rate: int
              ) -> np.ndarray:
    """Mix rendered stems into one mono signal.

    Parameters
    ----------
    stems : mapping
        Part -> float32 array of shape (2, n_samples) (stereo; lengths may differ).
    choices : mapping
        :func:`choose_band_rendering` (levels, sends, chorus, reverb, compressor, limiter).
    sample_rate : int
        Hz.

    Returns
    -------
    y : np.ndarray, shape (n_samples,), float32
        The mono mix (before the song's gain and peak safety), as long as the longest stem.
    """
    import pedalboard as pb

    n = max(s.shape[-1] for s in stems.values())
    dry = np.zeros((2, n), dtype=np.float32)
    send = np.zeros((2, n), dtype=np.float32)
    for part, y in stems.items():
        y = np.asarray(y, dtype=np.float32)
        if not np.any(y):
            continue
        chorus = choices["chorus"].get(part)
        if chorus:
            y = pb.Chorus(**chorus)(y, sample_rate)
        gain = 10.0 ** ((STEM_RMS_DB - _rms_db(y) + choices["level_db"][part]) / 20.0)
        y = y * np.float32(gain)
        dry[:, :y.shape[-1]] += y
        send[:, :y.shape[-1]] += y * np.float32(choices["reverb_send"][part])
    room = choices["reverb"]
    wet = pb.Reverb(room_size=room["room_size"], damping=room["damping"], wet_level=1.0,
                    dry_level=0.0, width=1.0)(send, sample_rate)
    bus = pb.Pedalboard([
        pb.Compressor(threshold_db=choices["compressor"]["threshold_db"],
                      ratio=choices["compressor"]["ratio"], attack_ms=10.0, release_ms=150.0),
        pb.Limiter(threshold_db=choices["limiter_db"], release_ms=100.0),
    ])
    mix = bus(dry + wet, sample_rate)
    return mix.mean(axis=0).astype(np.float32)
