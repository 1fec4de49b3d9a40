"""A band arrangement for POP909 songs: a bass line and a drum part on the song's bar grid.

POP909 holds piano arrangements (melody, bridge, piano) with no drums and no bass, while the
records the model is used on have both; worse, a drummer marks sections (a new groove, a
crash on the first beat, a fill before the change) in ways a piano part does not.  This module
writes those two parts from what POP909 gives exactly: the beat grid (``beat_midi.txt``), the
chords (``chord_midi.txt``) and the annotators' bars with their phrase labels
(:func:`msaf_learned_ssm_jams.pop909.pop909_bar_grid`).

Every choice is drawn from the generator passed in and returned in a JSON-ready ``plan``, so a
song's arrangement is reproducible and recorded.  The section cues are kept *cues*, not
giveaways: sections with the same label share a groove (as a band would play them), fills come
at phrase ends with probability :data:`FILL_P_PHRASE_END` but also at other bar ends
(:data:`FILL_P_FOUR_BARS` every fourth bar, :data:`FILL_P_OTHER_BAR` elsewhere), crashes open
only some sections, and drums drop out of some intros and outros.

Those cues are what :func:`plan_arrangement` draws by default (``cues="labelled"``).  With
``cues="decorrelated"`` the same kinds of events come at the same average rates, but at bars
drawn independently of the annotated structure (:func:`decorrelated_rates`): a model that
learned "new groove / crash / fill = boundary" from the labelled renders loses that shortcut
on such renders, which is what they are for (a diagnostic, not training data).

Notes are :class:`Note` tuples in seconds; :func:`notes_to_midi` writes them as a MIDI file.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import mido
import numpy as np

__all__ = [
    "Note", "DRUM_CHANNEL", "GROOVES", "BASS_PATTERNS", "CUES", "plan_arrangement",
    "decorrelated_rates", "drum_notes", "bass_notes", "chord_root", "notes_to_midi",
    "track_messages",
]

#: MIDI channel 10 (0-based 9): General MIDI percussion.
DRUM_CHANNEL = 9

#: Probability of a fill in the last bar of a phrase, in a bar that ends a group of four
#: bars inside a phrase, and in any other bar: the phrase end is favoured (as drummers do)
#: but not certain, and fills elsewhere keep a fill from marking a boundary by itself.
FILL_P_PHRASE_END = 0.5
FILL_P_FOUR_BARS = 0.25
FILL_P_OTHER_BAR = 0.05
#: Probability of a crash on the first beat of a section whose label differs from the last
#: one's, and on a phrase start that repeats the previous label.
CRASH_P_NEW_SECTION = 0.65
CRASH_P_REPEATED = 0.25
#: Probability that the drums sit out an intro (``i``) / outro (``o``) or the pick-up bars.
DRUMLESS_P_INTRO_OUTRO = 0.45
#: Probability that the bass rests through an intro or outro (it always rests in pick-up bars).
BASS_REST_P_INTRO_OUTRO = 0.3

#: How the section cues (groove and bass changes, fills, crashes, drums sitting out) are placed:
#: ``"labelled"`` on the annotated structure (the probabilities above); ``"decorrelated"`` at
#: bars drawn independently of it, at rates computed per song by :func:`decorrelated_rates`
#: so that the amount of each cue is what the labelled mode gives that song on average.
CUES = ("labelled", "decorrelated")

_EDGE_LABELS = ("", "i", "o", "I", "O")

# General MIDI percussion keys.
KICK, SIDE_STICK, SNARE, CLAP = 36, 37, 38, 39
HAT_CLOSED, HAT_PEDAL, HAT_OPEN = 42, 44, 46
CRASH, RIDE, TAMBOURINE, SHAKER = 49, 51, 54, 70
TOMS = (50, 48, 47, 45, 43, 41)  # high to low

#: Groove library: name -> (steps per beat, {drum key: [(step, accent)]}) for one bar of
#: 4 beats (16 steps) or 3 beats (12 steps); accent 1.0 is the loudest hit.
Groove = Dict[int, List[Tuple[int, float]]]


def _hits(steps: Sequence[int], accent: float = 1.0, weak: float = 0.7,
          strong: Sequence[int] = ()) -> List[Tuple[int, float]]:
    return [(s, accent if (not strong or s in strong) else weak) for s in steps]


def _eighths(n_steps: int) -> List[int]:
    return list(range(0, n_steps, 2))


GROOVES: Dict[int, Dict[str, Groove]] = {
    4: {
        "rock": {KICK: _hits([0, 8]), SNARE: _hits([4, 12]),
                 HAT_CLOSED: _hits(_eighths(16), 0.9, 0.6, strong=[0, 4, 8, 12])},
        "rock_push": {KICK: _hits([0, 8, 10]), SNARE: _hits([4, 12]),
                      HAT_CLOSED: _hits(_eighths(16), 0.9, 0.6, strong=[0, 4, 8, 12])},
        "pop16": {KICK: _hits([0, 6, 8]), SNARE: _hits([4, 12]),
                  HAT_CLOSED: _hits(range(16), 0.8, 0.45, strong=_eighths(16))},
        "halftime": {KICK: _hits([0, 10]), SNARE: _hits([8]),
                     HAT_CLOSED: _hits(_eighths(16), 0.8, 0.55, strong=[0, 8])},
        "disco": {KICK: _hits([0, 4, 8, 12]), CLAP: _hits([4, 12], 0.9),
                  HAT_OPEN: _hits([2, 6, 10, 14], 0.7), HAT_CLOSED: _hits([0, 4, 8, 12], 0.5)},
        "ballad": {KICK: _hits([0, 10]), SIDE_STICK: _hits([4, 12], 0.8),
                   HAT_CLOSED: _hits(_eighths(16), 0.6, 0.4, strong=[0, 4, 8, 12])},
        "ride": {KICK: _hits([0, 8]), SNARE: _hits([4, 12]),
                 RIDE: _hits(_eighths(16), 0.8, 0.6, strong=[0, 4, 8, 12])},
        "rnb": {KICK: _hits([0, 3, 8, 11]), SNARE: _hits([4, 12]),
                HAT_CLOSED: _hits(range(16), 0.7, 0.4, strong=_eighths(16))},
        "shuffle_tamb": {KICK: _hits([0, 8]), SNARE: _hits([4, 12], 0.9),
                         TAMBOURINE: _hits(_eighths(16), 0.7, 0.5, strong=[4, 12])},
        "toms": {KICK: _hits([0, 6, 8]), TOMS[4]: _hits([4, 12], 0.8), TOMS[5]: _hits([14], 0.6),
                 SHAKER: _hits(range(16), 0.6, 0.35, strong=_eighths(16))},
        "light": {KICK: _hits([0], 0.7), SHAKER: _hits(range(16), 0.55, 0.3, strong=_eighths(16))},
    },
    3: {
        "waltz": {KICK: _hits([0]), SNARE: _hits([4, 8], 0.7),
                  HAT_CLOSED: _hits(_eighths(12), 0.7, 0.5, strong=[0, 4, 8])},
        "waltz_ballad": {KICK: _hits([0]), SIDE_STICK: _hits([8], 0.8),
                         HAT_CLOSED: _hits(_eighths(12), 0.6, 0.4, strong=[0])},
        "waltz_ride": {KICK: _hits([0, 6]), SNARE: _hits([8]),
                       RIDE: _hits(_eighths(12), 0.8, 0.6, strong=[0, 4, 8])},
        "waltz_light": {KICK: _hits([0], 0.7), SHAKER: _hits(range(12), 0.5, 0.3, strong=[0, 4, 8])},
    },
}

#: Bass patterns: name -> [(step, degree, length in steps)] for one bar of 16 (or 12) steps;
#: degree 0 is the root, 7 the fifth, 12 the octave.  Patterns for 4 beats are cut to 12
#: steps for triple metre.
BASS_PATTERNS: Dict[str, List[Tuple[int, int, int]]] = {
    "whole": [(0, 0, 16)],
    "halves": [(0, 0, 8), (8, 0, 8)],
    "root_fifth": [(0, 0, 8), (8, 7, 8)],
    "quarters": [(0, 0, 4), (4, 0, 4), (8, 0, 4), (12, 0, 4)],
    "quarters_fifth": [(0, 0, 4), (4, 0, 4), (8, 7, 4), (12, 0, 4)],
    "eighths": [(s, 0, 2) for s in range(0, 16, 2)],
    "octave_pop": [(0, 0, 3), (3, 0, 3), (6, 12, 2), (8, 0, 3), (11, 0, 3), (14, 12, 2)],
    "syncopated": [(0, 0, 6), (6, 0, 2), (8, 0, 4), (12, 7, 2), (14, 0, 2)],
}

_NOTE_NAMES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ROOT = re.compile(r"^([A-G])([#b]*)")


class Note(NamedTuple):
    """One note: ``start`` and ``duration`` in seconds, MIDI ``pitch`` and ``velocity``."""

    start: float
    duration: float
    pitch: int
    velocity: int


def chord_root(chord: str) -> Optional[int]:
    """Pitch class (0-11) of a chord label's root (``'Bb:min'`` -> 10); None for ``'N'``."""
    m = _ROOT.match(chord.strip())
    if m is None:
        return None
    pc = _NOTE_NAMES[m.group(1)] + m.group(2).count("#") - m.group(2).count("b")
    return pc % 12


def _fill_probabilities(phrase_start: np.ndarray, phrase_end: np.ndarray) -> np.ndarray:
    """Labelled mode's fill probability of each bar, shape (n_bars,) (last bar included)."""
    p = np.empty(len(phrase_start))
    in_phrase = 0  # bars since the last phrase start (or since the first bar)
    for b in range(len(phrase_start)):
        in_phrase = 0 if (b == 0 or phrase_start[b]) else in_phrase + 1
        if phrase_end[b]:
            p[b] = FILL_P_PHRASE_END
        elif (in_phrase + 1) % 4 == 0:
            p[b] = FILL_P_FOUR_BARS
        else:
            p[b] = FILL_P_OTHER_BAR
    return p


def _crash_probabilities(bar_labels: Sequence[str], phrase_start: np.ndarray) -> np.ndarray:
    """Labelled mode's crash probability of each bar, shape (n_bars,): 0 off phrase starts."""
    p = np.zeros(len(bar_labels))
    for b in np.flatnonzero(phrase_start):
        new = b == 0 or bar_labels[b - 1] != bar_labels[b]
        p[b] = CRASH_P_NEW_SECTION if new else CRASH_P_REPEATED
    return p


def decorrelated_rates(bar_labels: Sequence[str], phrase_start: np.ndarray,
                       phrase_end: np.ndarray) -> Dict[str, float]:
    """Per-bar probabilities of the decorrelated cues of one song.

    Each rate makes the decorrelated mode place, on average, as many of a cue in this song as
    the labelled mode does, but with the same probability at every bar: a boundary bar is no
    more likely than any other to get it, so the cue says nothing about boundaries or labels.

    Parameters
    ----------
    bar_labels : sequence of str, length n_bars
    phrase_start, phrase_end : np.ndarray, shape (n_bars,), bool
        As for :func:`plan_arrangement`.

    Returns
    -------
    rates : dict
        Probabilities in [0, 1], rounded to 6 digits (JSON-exact):

        * ``change``: that a bar after the first starts a new groove segment (new drum groove
          and bass pattern): the song's phrase starts per bar.
        * ``fill``: that a bar other than the last ends in a fill: the labelled mode's
          expected fill count (:data:`FILL_P_PHRASE_END` ... on the phrase grid) over the
          ``n_bars - 1`` bars that can take one.
        * ``crash``: that a bar opens with a crash: the labelled mode's expected crash count
          (:data:`CRASH_P_NEW_SECTION`, :data:`CRASH_P_REPEATED`) over ``n_bars``.
        * ``drumless``, ``bass_rest``: that a segment has no drums / no bass: the labelled
          mode's expected fraction of bars without them (intros, outros, pick-up bars).
    """
    n_bars = len(bar_labels)
    if n_bars == 0:
        return {"change": 0.0, "fill": 0.0, "crash": 0.0, "drumless": 0.0, "bass_rest": 0.0}
    fills = _fill_probabilities(phrase_start, phrase_end)[:-1].sum()
    crashes = _crash_probabilities(bar_labels, phrase_start).sum()
    edge = np.array([label in _EDGE_LABELS for label in bar_labels])
    pickup = np.array([label == "" for label in bar_labels])
    rest = pickup.sum() + BASS_REST_P_INTRO_OUTRO * (edge & ~pickup).sum()
    rates = {"change": np.count_nonzero(phrase_start) / n_bars,
             "fill": fills / (n_bars - 1) if n_bars > 1 else 0.0,
             "crash": crashes / n_bars,
             "drumless": DRUMLESS_P_INTRO_OUTRO * edge.sum() / n_bars,
             "bass_rest": rest / n_bars}
    return {k: round(float(v), 6) for k, v in rates.items()}


def _draw_bass(rng: np.random.Generator, rest: bool) -> Dict[str, Any]:
    pattern_names = sorted(BASS_PATTERNS)
    return {
        "pattern": pattern_names[int(rng.integers(len(pattern_names)))],
        "octave": int(rng.choice([1, 2])),  # C1 = 24 or C2 = 36 as the lowest root
        "staccato": round(float(rng.uniform(0.55, 0.95)), 2),
        "rest": bool(rest),
    }


def _plan_decorrelated(n_bars: int, names: Sequence[str], rates: Mapping[str, float],
                       rng: np.random.Generator) -> Dict[str, Any]:
    """Per-bar grooves, bass, fills and crashes placed independently of the structure."""
    starts: List[int] = []
    bar_grooves: List[Optional[str]] = []
    bar_bass: List[Dict[str, Any]] = []
    for b in range(n_bars):
        if b == 0 or rng.uniform() < rates["change"]:
            starts.append(b)
            drumless = rng.uniform() < rates["drumless"]
            groove = None if drumless else names[int(rng.integers(len(names)))]
            bass = _draw_bass(rng, rng.uniform() < rates["bass_rest"])
        bar_grooves.append(groove)
        bar_bass.append(bass)
    fills = [b for b in range(n_bars - 1) if rng.uniform() < rates["fill"]]
    crashes = [b for b in range(n_bars) if rng.uniform() < rates["crash"]]
    return {"cues": "decorrelated", "rates": dict(rates), "segment_starts": starts,
            "bar_grooves": bar_grooves, "bar_bass": bar_bass, "fills": fills,
            "crashes": crashes}


def plan_arrangement(bar_labels: Sequence[str], phrase_start: np.ndarray, phrase_end: np.ndarray,
                     beats_per_bar: int, rng: np.random.Generator, cues: str = "labelled"
                     ) -> Dict[str, Any]:
    """Draw the drum and bass choices of one song.

    Parameters
    ----------
    bar_labels : sequence of str, length n_bars
        Phrase letter of each bar (``""`` for pick-up bars outside the phrases).
    phrase_start, phrase_end : np.ndarray, shape (n_bars,), bool
        Whether the bar opens / closes a phrase.
    beats_per_bar : {3, 4}
    rng : np.random.Generator
        Source of every choice.
    cues : {"labelled", "decorrelated"}
        ``"labelled"``: grooves and bass patterns per section label, fills favouring phrase
        ends, crashes on phrase starts, drums sitting out intros and outros.
        ``"decorrelated"``: the same cues at the same average rates
        (:func:`decorrelated_rates`) but at bars drawn independently of the structure: groove
        segments start at random bars, each with a random groove and bass pattern (and,
        by segment, no drums or no bass), fills and crashes at a uniform per-bar rate.

    Returns
    -------
    plan : dict
        JSON-ready; in both modes ``fills`` and ``crashes`` (bar indices), ``swing``
        (0: straight), ``kit_velocity`` (base MIDI velocity of the kit).  Labelled:
        ``grooves`` (label -> groove name or None for no drums), ``bass`` (label ->
        {pattern, octave, staccato, rest}).  Decorrelated: ``cues``, ``rates``,
        ``segment_starts`` (bar indices), ``bar_grooves`` (groove name or None, per bar),
        ``bar_bass`` ({pattern, octave, staccato, rest} per bar).
    """
    if beats_per_bar not in GROOVES:
        raise ValueError(f"beats_per_bar must be 3 or 4, got {beats_per_bar}")
    if cues not in CUES:
        raise ValueError(f"cues must be one of {CUES}, got {cues!r}")
    n_bars = len(bar_labels)
    if len(phrase_start) != n_bars or len(phrase_end) != n_bars:
        raise ValueError("bar_labels, phrase_start and phrase_end must have the same length")
    names = sorted(GROOVES[beats_per_bar])
    if cues == "decorrelated":
        rates = decorrelated_rates(bar_labels, phrase_start, phrase_end)
        plan = _plan_decorrelated(n_bars, names, rates, rng)
    else:
        plan = _plan_labelled(bar_labels, phrase_start, phrase_end, names, rng)
    # Drawn last, after the cues, in both modes (the order that made the existing renders).
    plan["swing"] = round(float(rng.choice([0.0, 0.0, 0.0, rng.uniform(0.05, 0.2)])), 3)
    plan["kit_velocity"] = int(rng.integers(80, 110))
    return plan


def _plan_labelled(bar_labels: Sequence[str], phrase_start: np.ndarray, phrase_end: np.ndarray,
                   names: Sequence[str], rng: np.random.Generator) -> Dict[str, Any]:
    """Grooves and bass by section label, fills and crashes on the phrase grid."""
    n_bars = len(bar_labels)
    main = [g for g in names if "light" not in g]
    grooves: Dict[str, Optional[str]] = {}
    bass: Dict[str, Dict[str, Any]] = {}
    for label in sorted(set(bar_labels)):
        edge = label in _EDGE_LABELS
        if edge and rng.uniform() < DRUMLESS_P_INTRO_OUTRO:
            grooves[label] = None
        else:
            pool = names if edge else main
            grooves[label] = pool[int(rng.integers(len(pool)))]
        # The rest is drawn after the pattern (and only for intros and outros): the draws
        # stay in the order that made the existing renders.
        bass[label] = _draw_bass(rng, False)
        rest = label == "" or (edge and rng.uniform() < BASS_REST_P_INTRO_OUTRO)
        bass[label]["rest"] = bool(rest)
    fill_p = _fill_probabilities(phrase_start, phrase_end)
    crash_p = _crash_probabilities(bar_labels, phrase_start)
    fills, crashes = [], []
    for b in range(n_bars):
        if b + 1 < n_bars and rng.uniform() < fill_p[b]:
            fills.append(b)
        if phrase_start[b] and rng.uniform() < crash_p[b]:
            crashes.append(b)
    return {"grooves": grooves, "bass": bass, "fills": fills, "crashes": crashes}


def _step_times(beat_times: np.ndarray, first_beat: int, beats_per_bar: int, steps_per_beat: int,
                swing: float) -> np.ndarray:
    """Times (s) of the ``beats_per_bar * steps_per_beat + 1`` steps of one bar."""
    t0 = beat_times[first_beat:first_beat + beats_per_bar + 1]
    frac = np.arange(steps_per_beat) / steps_per_beat
    # Swing delays the off-beat 16ths by a fraction of a step.
    frac = frac + swing * (np.arange(steps_per_beat) % 2) / steps_per_beat
    ibi = np.diff(t0)
    steps = (t0[:-1, None] + ibi[:, None] * frac[None, :]).ravel()
    return np.append(steps, t0[-1])


def _fill_hits(n_steps: int, rng: np.random.Generator) -> List[Tuple[int, int, float]]:
    """Hits (step, key, accent) of a fill over the last beat or two of a bar."""
    length = int(rng.choice([4, 8])) if n_steps >= 16 else 4
    start = n_steps - length
    kind = int(rng.integers(3))
    hits = []
    for i, s in enumerate(range(start, n_steps)):
        if kind == 0:  # snare roll, crescendo
            hits.append((s, SNARE, 0.55 + 0.45 * i / length))
        elif kind == 1:  # down the toms
            hits.append((s, TOMS[min(i * len(TOMS) // length, len(TOMS) - 1)], 0.8))
        elif s % 2 == 0:  # snare and toms on 8ths, kick under
            hits.append((s, SNARE if (s // 2) % 2 == 0 else TOMS[2], 0.85))
            hits.append((s, KICK, 0.6))
    return hits


def drum_notes(plan: Dict[str, Any], beat_times: np.ndarray, bar_start_beats: np.ndarray,
               bar_labels: Sequence[str], beats_per_bar: int,
               rng: np.random.Generator) -> List[Note]:
    """The drum part (GM percussion keys) of a planned arrangement.

    Parameters
    ----------
    plan : dict
        From :func:`plan_arrangement`: its per-bar ``bar_grooves`` when present (decorrelated
        cues), else its per-label ``grooves``.
    beat_times : np.ndarray, shape (n_beats,)
        Seconds; must reach one beat past the last bar.
    bar_start_beats : np.ndarray, shape (n_bars,), int
        Index in ``beat_times`` of each bar's first beat.
    bar_labels : sequence of str, length n_bars
    beats_per_bar : {3, 4}
    rng : np.random.Generator
        Humanisation (velocities, and timing within +-4 ms).

    Returns
    -------
    notes : list of Note
    """
    notes: List[Note] = []
    base = plan["kit_velocity"]
    fills, crashes = set(plan["fills"]), set(plan["crashes"])
    n_steps = 4 * beats_per_bar
    names = _per_bar(plan, "bar_grooves", "grooves", bar_labels)
    for b, first in enumerate(bar_start_beats):
        name = names[b]
        if name is None:
            continue
        steps = _step_times(beat_times, int(first), beats_per_bar, 4, plan["swing"])
        hits = [(s, key, acc) for key, h in GROOVES[beats_per_bar][name].items() for s, acc in h]
        if b in fills:
            fill = _fill_hits(n_steps, rng)
            start = min(s for s, _, _ in fill)
            # The groove keeps its kick on the fill's first step; the rest gives way to the fill.
            hits = [h for h in hits if h[0] < start or (h[0] == start and h[1] == KICK)] + fill
        if b in crashes:
            hits.append((0, CRASH, 1.0))
        for s, key, acc in hits:
            vel = int(np.clip(round(base * acc + rng.normal(0, 6)), 1, 127))
            t = float(steps[s] + rng.normal(0, 0.004))
            notes.append(Note(max(t, 0.0), 0.1, int(key), vel))
    return notes


def _per_bar(plan: Mapping[str, Any], per_bar: str, per_label: str,
             bar_labels: Sequence[str], default: bool = True) -> List[Any]:
    """A plan's choice for each bar: ``plan[per_bar]`` if planned by bar, else by label
    (a label missing from ``plan[per_label]`` gives None if ``default``, else a KeyError)."""
    if per_bar not in plan:
        table = plan[per_label]
        return [table.get(label) if default else table[label] for label in bar_labels]
    if len(plan[per_bar]) != len(bar_labels):
        raise ValueError(f"plan has {len(plan[per_bar])} {per_bar} for {len(bar_labels)} bars")
    return list(plan[per_bar])


def _chord_at(chords: Sequence[Tuple[float, float, str]], starts: np.ndarray, t: float
              ) -> Optional[int]:
    i = int(np.searchsorted(starts, t + 1e-3, side="right")) - 1
    if i < 0 or t > chords[i][1] + 1e-3:
        return None
    return chord_root(chords[i][2])


def bass_notes(plan: Dict[str, Any], beat_times: np.ndarray, bar_start_beats: np.ndarray,
               bar_labels: Sequence[str], beats_per_bar: int,
               chords: Sequence[Tuple[float, float, str]], rng: np.random.Generator) -> List[Note]:
    """The bass line of a planned arrangement: roots (and fifths, octaves) of the chords.

    A note is cut where the chord changes, and a new chord inside a pattern's long note starts
    a new note, so the bass follows the harmony even when the pattern is slower than it.

    Parameters
    ----------
    plan : dict
        From :func:`plan_arrangement`: its per-bar ``bar_bass`` when present (decorrelated
        cues), else its per-label ``bass``.
    beat_times, bar_start_beats, bar_labels, beats_per_bar
        As for :func:`drum_notes`.
    chords : sequence of (start_s, end_s, chord label)
        From :func:`msaf_learned_ssm_jams.pop909.read_pop909_chords`.
    rng : np.random.Generator
        Velocity humanisation.

    Returns
    -------
    notes : list of Note
        Pitches between 24 (C1) and 55.
    """
    starts = np.array([c[0] for c in chords]) if chords else np.zeros(0)
    change_times = starts
    n_steps = 4 * beats_per_bar
    notes: List[Note] = []
    choices = _per_bar(plan, "bar_bass", "bass", bar_labels, default=False)
    for first, choice in zip(bar_start_beats, choices):
        if choice["rest"]:
            continue
        steps = _step_times(beat_times, int(first), beats_per_bar, 4, 0.0)
        lowest = 12 * (choice["octave"] + 1)  # MIDI pitch of C in that octave
        events = [(s, d, min(ln, n_steps - s)) for s, d, ln in BASS_PATTERNS[choice["pattern"]]
                  if s < n_steps]
        # Chord changes inside the bar that fall on no pattern step start a note of their own.
        inside = change_times[(change_times > steps[0] + 1e-3) & (change_times < steps[-1] - 1e-3)]
        for tc in inside:
            s = int(np.argmin(np.abs(steps[:-1] - tc)))
            if all(s != e[0] for e in events):
                events.append((s, 0, n_steps - s))
        events.sort()
        for i, (s, degree, length) in enumerate(events):
            end_step = min(s + length, events[i + 1][0] if i + 1 < len(events) else n_steps)
            t0, t1 = float(steps[s]), float(steps[end_step])
            root = _chord_at(chords, starts, t0)
            if root is None:
                continue
            # The note stops at the next chord change.
            later = change_times[(change_times > t0 + 1e-3) & (change_times < t1)]
            if later.size:
                t1 = float(later[0])
            pitch = lowest + root + degree
            vel = int(np.clip(round(90 + (8 if s == 0 else 0) + rng.normal(0, 5)), 1, 127))
            notes.append(Note(t0, max((t1 - t0) * choice["staccato"], 0.05), int(pitch), vel))
    return notes


def notes_to_midi(notes: Sequence[Note], channel: int, program: Optional[int] = None,
                  controls: Sequence[Tuple[float, int, int]] = (),
                  messages: Sequence[Tuple[float, mido.Message]] = ()) -> mido.MidiFile:
    """Write events timed in seconds as a one-track MIDI file (120 BPM: 960 ticks a second).

    Parameters
    ----------
    notes : sequence of Note
    channel : int
        0-15 (9 is percussion).
    program : int, optional
        GM program (0-127) set at time 0.
    controls : sequence of (time_s, controller, value)
        Control changes (e.g. 11 expression, 1 modulation) on ``channel``.
    messages : sequence of (time_s, mido.Message)
        Other channel messages, written as they are (e.g. a source track's notes and pedal).

    Returns
    -------
    midi : mido.MidiFile
    """
    ticks_per_beat = 480
    ticks_per_sec = ticks_per_beat * 2.0  # 120 BPM, the MIDI default tempo

    def tick(t: float) -> int:
        return int(round(max(t, 0.0) * ticks_per_sec))

    # (tick, order, message): at equal ticks controls first, then note-offs, then note-ons,
    # so a repeated pitch is not cut and a control applies to the note it precedes.
    events: List[Tuple[int, int, mido.Message]] = []
    for n in notes:
        on = tick(n.start)
        off = max(on + 1, tick(n.start + n.duration))
        events.append((on, 2, mido.Message("note_on", channel=channel, note=n.pitch,
                                           velocity=n.velocity)))
        events.append((off, 1, mido.Message("note_off", channel=channel, note=n.pitch,
                                            velocity=0)))
    for t, control, value in controls:
        events.append((tick(t), 0, mido.Message("control_change", channel=channel,
                                                control=int(control),
                                                value=int(np.clip(value, 0, 127)))))
    for t, msg in messages:
        is_off = msg.type == "note_off" or (msg.type == "note_on" and msg.velocity == 0)
        order = 2 if msg.type == "note_on" and not is_off else (1 if is_off else 0)
        events.append((tick(t), order, msg))
    events.sort(key=lambda e: (e[0], e[1]))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=500000, time=0))
    if program is not None:
        track.append(mido.Message("program_change", channel=channel, program=int(program), time=0))
    now = 0
    for t, _, msg in events:
        track.append(msg.copy(time=t - now))
        now = t
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    midi.tracks.append(track)
    return midi


def track_messages(midi: mido.MidiFile, track_name: str) -> List[Tuple[float, mido.Message]]:
    """The channel messages of one named track, timed in seconds through the file's tempo map.

    Program changes are left out (the renderer chooses the program).

    Parameters
    ----------
    midi : mido.MidiFile
    track_name : str
        Compared case-insensitively, surrounding spaces ignored.

    Returns
    -------
    messages : list of (time_s, mido.Message)
    """
    wanted = track_name.strip().upper()
    keep = [t for t in midi.tracks
            if t.name.strip().upper() == wanted or not any(hasattr(m, "channel") for m in t)]
    sub = mido.MidiFile(type=1, ticks_per_beat=midi.ticks_per_beat)
    sub.tracks.extend(keep)
    out, now = [], 0.0
    for msg in sub:  # iterating a MidiFile gives delta times in seconds, tempo map applied
        now += msg.time
        if not msg.is_meta and msg.type != "program_change":
            out.append((now, msg.copy(time=0)))
    return out
