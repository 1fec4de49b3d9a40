"""Convert POP909 phrase-structure labels (Dai et al., ISMIR 2020) to timed JAMS segments.

Inputs for song ``NNN``
-----------------------
- ``pop909_structure/NNN/human_label{1,2}.txt``: one label string per annotator, e.g.
  ``i4A4B8A4b4o3``: phrases as (letter, length in bars);
- ``pop909_structure/NNN/melody.txt``: the melody as ``pitch duration`` lines, durations in
  16th notes, pitch 0 a rest; its time 0 is the time 0 of the labels;
- ``pop909/NNN/beat_midi.txt``: one row per beat (quarter note): ``time_s``, a flag every
  2 beats, a flag every 4 beats (for triple-metre songs every 3 and 6 beats);
- ``pop909/NNN/NNN.mid``: the MIDI file (tracks MELODY, BRIDGE, PIANO);
- ``pop909/NNN/chord_midi.txt``: ``start end chord``, leading ``N`` rows before the music;
- ``pop909/index.xlsx``: ``num_beats_per_measure`` (2 or 3) and ``num_quavers_per_beat``.

How the labels are placed in time
---------------------------------
Dai et al.'s preprocessing (github.com/Dsqvival/hierarchical-structure-analysis,
``melody_extraction.py``) quantises the MIDI melody in 16th notes from a ``begin_time``
(the end of the leading no-chord region) that is not distributed; the labels count bars
on that same grid. So the origin is recovered from the melody: the first MELODY note of
the MIDI file, minus the leading rest of ``melody.txt`` (16ths -> beats: /4), converted
to beat units on ``beat_midi.txt``'s beat grid and rounded to the nearest beat. When that
fails (no MIDI melody, a negative origin), the origin falls back to the first non-``N``
chord of ``chord_midi.txt``, rounded to the nearest beat; ``sandbox.origin_method`` says
which was used. Phrase ``k`` then starts ``bpb * (bars before it)`` beats after the origin,
with ``bpb`` = 4 beats a bar for duple songs (``num_beats_per_measure`` = 2: the annotators'
bar is the 4-beat unit of beat_midi's third column) and 3 for triple songs; beat indices
map to seconds through ``beat_midi.txt`` (extrapolated with the last inter-beat interval
past its end). Bars are counted on the beat grid, not on the downbeat flags, because the
flags are irregular in places (5- or 6-beat "bars") while the melody and chord files
assume a regular grid.

Findings that led there (measured over the 819 songs present): the first downbeat flag is
the origin in only 358 of the 772 songs whose melody gives an integer origin; the first
non-``N`` chord in 539; the melody origin is an integer beat (+-0.15) in 772 of 819.
Taking the first chord alone misplaces e.g. song 016 by 2 beats (its finalized_chord.txt
starts two beats into the first MIDI chord, where the melody puts the origin).

Duration: the later of the end of the last beat (last beat time + last inter-beat
interval) and the MIDI file's length.

Alignment checks (:func:`check_pop909_alignment`), per annotator
---------------------------------------------------------------
Downbeats are beat_midi's column-1 flags (POP909's own measures of
``num_beats_per_measure`` beats); its 4-beat column is not used, its phase against the
2-beat flags being arbitrary in many songs. Tolerances were set from the measured
distributions (median, 90th percentile): the last phrase ends 1.25 (0.5 to 3.8) bars
before the end of the beat grid, which runs on through the final chord's release.

- ``downbeats``: >= 90 % of the phrase boundaries inside the beat grid are on downbeats
  (the fraction is bimodal: ~1.0, or ~0.1 when the grid is one beat off the flags);
- ``start``: the first phrase starts at or after beat 0 and at most 4 bars after the
  first downbeat;
- ``end``: the last phrase ends between 4 bars before and 1 bar after the end of the
  last beat, and no segment runs past the duration;
- ``bar_count``: the summed bars are within 4 of the song's bars counted from the
  downbeat flags after the origin.

Measured with ``python bench/pop909_alignment.py`` over the 819 songs (a song passes a
check when both annotators do): downbeats 598 (73.0 %), start 770 (94.0 %), end 748
(91.3 %), bar_count 794 (96.9 %), all four 523 (63.9 %); the origin came from the melody
for 803 songs, from the first chord for 16. Failing songs are listed with reasons by the
script, never dropped silently: :func:`pop909_song_to_jams` converts every song it can
and raises (naming the file and segment) for the 34 songs (4.2 %) whose last phrase runs
more than 0.5 s past the song's end (e.g. 624, the one song whose index says 3 quavers and
3 beats a measure while its bars are 4 beats; 062 and 746, whose melody origin is off).
"""

from __future__ import annotations

import functools
import re
import struct
from pathlib import Path

import jams
import numpy as np

from .errors import AnnotationError

from .segments import segments_to_jams, validate_segments

__all__ = [
    "ANNOTATORS",
    "PASS_RATES_MEASURED",
    "parse_pop909_label",
    "read_pop909_index",
    "pop909_song_ids",
    "pop909_song_to_jams",
    "pop909_bar_grid",
    "read_pop909_chords",
    "check_pop909_alignment",
]

ANNOTATORS = ("human_label1", "human_label2")

#: Fractions of the 819 songs passing each check for both annotators, measured with
#: ``bench/pop909_alignment.py`` (see module docstring).
PASS_RATES_MEASURED = {
    "downbeats": 598 / 819,
    "start": 770 / 819,
    "end": 748 / 819,
    "bar_count": 794 / 819,
    "overall": 523 / 819,
}

#: Check tolerances, in bars (see the module docstring for why).
MAX_START_BARS = 4
MAX_END_EARLY_BARS = 4
MAX_END_LATE_BARS = 1
MAX_BAR_COUNT_DIFF = 4
MIN_DOWNBEAT_FRACTION = 0.9

_PHRASE = re.compile(r"([A-Za-z])(\d+)")


def parse_pop909_label(s: str) -> list[tuple[str, int]]:
    """Parse a POP909 phrase label string.

    Parameters
    ----------
    s : str
        E.g. ``"i4A4B8A4b4o3"`` or ``"A12b10X3"`` (bar counts may have several digits).

    Returns
    -------
    list of (str, int)
        ``(letter, bars)`` per phrase, e.g. ``[('i', 4), ('A', 4), ('B', 8), ...]``.

    Raises
    ------
    AnnotationError
        Empty string, characters that are not letter-number pairs, or a zero bar count.
    """
    text = s.strip()
    if not text:
        raise AnnotationError("empty POP909 label string")
    out = []
    pos = 0
    for m in _PHRASE.finditer(text):
        if m.start() != pos:
            raise AnnotationError(f"bad POP909 label {s!r} at character {pos}: {text[pos:m.start()]!r}")
        bars = int(m.group(2))
        if bars <= 0:
            raise AnnotationError(f"bad POP909 label {s!r}: phrase {m.group(0)!r} has 0 bars")
        out.append((m.group(1), bars))
        pos = m.end()
    if pos != len(text):
        raise AnnotationError(f"bad POP909 label {s!r} at character {pos}: {text[pos:]!r}")
    return out


@functools.lru_cache(maxsize=4)
def _read_index_cached(path: str, mtime: float) -> dict:
    import openpyxl  # only POP909 needs it

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many types
        raise AnnotationError(f"{path}: cannot read spreadsheet ({exc})") from None
    try:
        rows = list(wb.worksheets[0].iter_rows(values_only=True))
    finally:
        wb.close()
    if not rows:
        raise AnnotationError(f"{path}: empty spreadsheet")
    header = [str(h).strip() if h is not None else "" for h in rows[0]]
    need = ["song_id", "num_beats_per_measure", "num_quavers_per_beat"]
    missing = [h for h in need if h not in header]
    if missing:
        raise AnnotationError(f"{path}: missing columns {missing}")
    out = {}
    for row in rows[1:]:
        rec = dict(zip(header, row))
        if rec.get("song_id") is None:
            continue
        sid = f"{int(rec['song_id']):03d}"
        try:
            rec["num_beats_per_measure"] = int(rec["num_beats_per_measure"])
            rec["num_quavers_per_beat"] = int(rec["num_quavers_per_beat"])
        except (TypeError, ValueError):
            raise AnnotationError(f"{path}: bad metre for song {sid}: {row}") from None
        rec["song_id"] = sid
        out[sid] = rec
    return out


def read_pop909_index(pop909_dir: str | Path) -> dict[str, dict]:
    """Read ``index.xlsx``: ``{song_id: {column: value}}`` (cached per file version).

    ``num_beats_per_measure`` and ``num_quavers_per_beat`` are ints; song ids are
    zero-padded to 3 digits.
    """
    path = Path(pop909_dir) / "index.xlsx"
    if not path.is_file():
        raise AnnotationError(f"{path}: file not found")
    return _read_index_cached(str(path.resolve()), path.stat().st_mtime)


def pop909_song_ids(structure_dir: str | Path, pop909_dir: str | Path | None = None) -> list[str]:
    """Song ids (folder names of digits) present in ``structure_dir``, sorted; with
    ``pop909_dir``, only those that also have their MIDI file ``pop909_dir/NNN/NNN.mid``."""
    ids = sorted(p.name for p in Path(structure_dir).iterdir() if p.is_dir() and p.name.isdigit())
    if pop909_dir is not None:
        root = Path(pop909_dir)
        ids = [i for i in ids if (root / i / f"{i}.mid").is_file()]
    return ids


# ---------------------------------------------------------------------------------------
# File readers


def _load_table(path: Path, dtype: type, what: str) -> np.ndarray:
    """A whitespace-separated table as a 2-D array; AnnotationError naming the file."""
    if not path.is_file():
        raise AnnotationError(f"{path}: file not found")
    try:
        return np.loadtxt(path, dtype=dtype, ndmin=2)
    except ValueError as exc:
        raise AnnotationError(f"{path}: not {what} ({exc})") from None


def _read_beats(path: Path) -> np.ndarray:
    beats = _load_table(path, float, "a table of numbers")
    if beats.shape[1] != 3 or beats.shape[0] < 2:
        raise AnnotationError(f"{path}: expected >= 2 rows of 3 columns, got {beats.shape}")
    if not np.all(np.isfinite(beats)) or np.any(np.diff(beats[:, 0]) <= 0):
        raise AnnotationError(f"{path}: beat times must be finite and strictly increasing")
    return beats


def _read_melody(path: Path) -> np.ndarray:
    mel = _load_table(path, int, "'pitch duration' integer pairs")
    if mel.shape[1] != 2 or mel.shape[0] == 0:
        raise AnnotationError(f"{path}: expected rows of 'pitch duration', got {mel.shape}")
    return mel


def _first_chord_time(path: Path) -> float | None:
    if not path.is_file():
        return None
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] != "N":
            return float(parts[0])
    return None


def _read_varlen(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    while True:
        byte = data[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, pos


def _midi_melody_onset_and_length(path: Path) -> tuple[float | None, float]:
    """First note-on of the MELODY track and the file's length, in seconds.

    A minimal Standard MIDI File scanner: the full parse (mido) takes ~30 ms a song,
    too slow to check all 819 songs in a test; this only follows tempo events, track
    names and the MELODY track's first note-on.
    """
    data = path.read_bytes()
    if data[:4] != b"MThd":
        raise AnnotationError(f"{path}: not a MIDI file")
    hlen, _fmt, ntrks, division = struct.unpack(">IHHH", data[4:14])
    if division & 0x8000:
        raise AnnotationError(f"{path}: SMPTE time division not supported")
    pos = 8 + hlen
    tempos: list[tuple[int, int]] = []
    melody_tick = None
    max_tick = 0
    for _ in range(ntrks):
        if data[pos:pos + 4] != b"MTrk":
            raise AnnotationError(f"{path}: corrupt MIDI track header at byte {pos}")
        (tlen,) = struct.unpack(">I", data[pos + 4:pos + 8])
        p, end = pos + 8, pos + 8 + tlen
        tick, status, name, first_on = 0, 0, None, None
        while p < end:
            delta, p = _read_varlen(data, p)
            tick += delta
            byte = data[p]
            if byte >= 0x80:
                status = byte
                p += 1
            if status == 0xFF:
                mtype = data[p]
                mlen, p = _read_varlen(data, p + 1)
                if mtype == 0x51 and mlen == 3:
                    tempos.append((tick, int.from_bytes(data[p:p + 3], "big")))
                elif mtype == 0x03:
                    name = data[p:p + mlen].decode("latin-1").strip()
                p += mlen
            elif status in (0xF0, 0xF7):
                slen, p = _read_varlen(data, p)
                p += slen
            else:
                kind = status & 0xF0
                if kind in (0xC0, 0xD0):
                    p += 1
                else:
                    if kind == 0x90 and data[p + 1] > 0 and first_on is None:
                        first_on = tick
                    p += 2
        max_tick = max(max_tick, tick)
        if name == "MELODY" and first_on is not None:
            melody_tick = first_on
        pos = end
    tempos.sort()

    def tick_to_sec(t: int) -> float:
        sec, last_tick, tempo = 0.0, 0, 500000
        for ttick, ttempo in tempos:
            if ttick >= t:
                break
            sec += (ttick - last_tick) * tempo / division / 1e6
            last_tick, tempo = ttick, ttempo
        return sec + (t - last_tick) * tempo / division / 1e6

    onset = tick_to_sec(melody_tick) if melody_tick is not None else None
    return onset, tick_to_sec(max_tick)


# ---------------------------------------------------------------------------------------
# Alignment


def _song_paths(song_id: str, pop909_dir: Path, structure_dir: Path) -> dict[str, Path]:
    return {
        "beats": pop909_dir / song_id / "beat_midi.txt",
        "midi": pop909_dir / song_id / f"{song_id}.mid",
        "chords": pop909_dir / song_id / "chord_midi.txt",
        "melody": structure_dir / song_id / "melody.txt",
        **{a: structure_dir / song_id / f"{a}.txt" for a in ANNOTATORS},
    }


def _normalise_id(song_id: str | int) -> str:
    sid = str(song_id).strip()
    if not sid.isdigit():
        raise ValueError(f"POP909 song id must be digits, got {song_id!r}")
    return f"{int(sid):03d}"


def _song_grid(song_id: str, pop909_dir: Path, structure_dir: Path) -> dict:
    """Everything needed to place labels in time: beats, metre, origin, duration."""
    paths = _song_paths(song_id, pop909_dir, structure_dir)
    index = read_pop909_index(pop909_dir)
    if song_id not in index:
        raise AnnotationError(f"{pop909_dir / 'index.xlsx'}: no row for song {song_id}")
    meta = index[song_id]
    beats = _read_beats(paths["beats"])
    times = beats[:, 0]
    n = len(times)
    triple = meta["num_beats_per_measure"] == 3
    bpb = 3 if triple else 4
    # Column 1 flags every num_beats_per_measure beats, column 2 every 2 of those; the
    # annotators' bar is 3 beats in triple metre, 4 (two POP909 "measures") in duple.
    # Downbeats of POP909's own measures (num_beats_per_measure beats: column 1); the
    # 4-beat flags of column 2 are not used: their phase against the 2-beat flags is
    # arbitrary in many songs (e.g. 009: the melody's bar lines fall between them).
    downbeat = beats[:, 1] > 0.5
    ibi_first = float(times[1] - times[0])
    ibi_last = float(np.median(np.diff(times[-5:])))

    melody = _read_melody(paths["melody"])
    rest16 = int(melody[0, 1]) if melody[0, 0] == 0 else 0
    midi_onset, midi_length = (None, 0.0)
    if paths["midi"].is_file():
        midi_onset, midi_length = _midi_melody_onset_and_length(paths["midi"])

    def sec_to_beat(t: float) -> float:
        if t < times[0]:
            return (t - times[0]) / ibi_first
        if t > times[-1]:
            return (n - 1) + (t - times[-1]) / ibi_last
        return float(np.interp(t, times, np.arange(n)))

    origin, method, residual = None, None, None
    if midi_onset is not None:
        exact = sec_to_beat(midi_onset) - rest16 / 4.0
        if round(exact) >= 0:
            origin, method, residual = int(round(exact)), "melody", float(exact - round(exact))
    if origin is None:
        chord_t = _first_chord_time(paths["chords"])
        if chord_t is None:
            raise AnnotationError(
                f"{paths['melody'].parent}: cannot place the labels: no MIDI melody onset "
                f"and no chord in {paths['chords']}"
            )
        origin, method = max(0, int(round(sec_to_beat(chord_t)))), "first_chord"
    duration = max(float(times[-1] + ibi_last), float(midi_length))
    return {
        "times": times, "downbeat": downbeat, "bpb": bpb, "measure": 3 if triple else 2, "origin": origin,
        "origin_method": method, "origin_residual": residual, "duration": duration,
        "ibi_first": ibi_first, "ibi_last": ibi_last, "paths": paths, "meta": meta,
    }


def _beat_to_sec(grid: dict, k: np.ndarray) -> np.ndarray:
    times = grid["times"]
    n = len(times)
    k = np.asarray(k, dtype=float)
    inside = np.interp(k, np.arange(n), times)
    after = times[-1] + (k - (n - 1)) * grid["ibi_last"]
    before = times[0] + k * grid["ibi_first"]
    return np.where(k > n - 1, after, np.where(k < 0, before, inside))


def _read_label(path: Path) -> list[tuple[str, int]]:
    if not path.is_file():
        raise AnnotationError(f"{path}: file not found")
    text = path.read_text(encoding="utf-8-sig").strip()
    try:
        return parse_pop909_label(text)
    except AnnotationError as exc:
        raise AnnotationError(f"{path}: {exc}") from None


def _phrase_beats(grid: dict, phrases: list[tuple[str, int]]) -> np.ndarray:
    """Beat index of each phrase boundary (n_phrases + 1 values)."""
    bars = np.array([b for _, b in phrases])
    return grid["origin"] + grid["bpb"] * np.concatenate([[0], np.cumsum(bars)])


def pop909_bar_grid(
    song_id: str | int, pop909_dir: str | Path, structure_dir: str | Path,
    annotator: str = "human_label1",
) -> dict:
    """The bars of one song as the annotators counted them, with each bar's phrase label.

    Bars run every ``beats_per_bar`` beats from the labels' origin (see the module
    docstring), backwards to the first beat (pick-up bars, labelled ``""``) and forwards to
    the end of the last phrase (extrapolated past ``beat_midi.txt`` with its last interval).

    Parameters
    ----------
    song_id : str or int
        ``'001'`` ... ``'909'``.
    pop909_dir, structure_dir : str or Path
        The ``pop909/`` and ``pop909_structure/`` folders.
    annotator : str
        Whose phrases label the bars (one of :data:`ANNOTATORS`).

    Returns
    -------
    grid : dict
        ``beat_times`` (n_beats,) seconds, covering every bar; ``beats_per_bar`` (3 or 4);
        ``bar_start_beats`` (n_bars,) int index into ``beat_times`` of each bar's first
        beat; ``bar_labels`` list of n_bars phrase letters (``""`` outside the phrases);
        ``phrase_start`` and ``phrase_end`` (n_bars,) bool: the bar opens / closes a phrase.
    """
    if annotator not in ANNOTATORS:
        raise ValueError(f"annotator must be one of {ANNOTATORS}, got {annotator!r}")
    sid = _normalise_id(song_id)
    grid = _song_grid(sid, Path(pop909_dir), Path(structure_dir))
    phrases = _read_label(grid["paths"][annotator])
    bpb, origin = int(grid["bpb"]), int(grid["origin"])
    n_phrase_bars = int(sum(b for _, b in phrases))
    first = origin % bpb
    n_pickup = (origin - first) // bpb
    n_bars = n_pickup + n_phrase_bars
    beat_times = _beat_to_sec(grid, np.arange(first + bpb * n_bars + 1))
    labels = [""] * n_pickup
    starts = [False] * n_pickup
    ends = [False] * n_pickup
    for letter, n in phrases:
        labels += [letter] * n
        starts += [True] + [False] * (n - 1)
        ends += [False] * (n - 1) + [True]
    return {
        "beat_times": beat_times,
        "beats_per_bar": bpb,
        "bar_start_beats": first + bpb * np.arange(n_bars),
        "bar_labels": labels,
        "phrase_start": np.array(starts, dtype=bool),
        "phrase_end": np.array(ends, dtype=bool),
    }


def read_pop909_chords(path: str | Path) -> list[tuple[float, float, str]]:
    """Read ``chord_midi.txt``: ``(start_s, end_s, chord)`` rows, e.g. ``'Bb:min'``, ``'N'``."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: file not found")
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            start, end = float(parts[0]), float(parts[1])
            chord = parts[2]
        except (IndexError, ValueError):
            raise AnnotationError(f"{path}: line {i}: expected 'start end chord', got {line!r}") from None
        if not (np.isfinite(start) and np.isfinite(end)) or end < start:
            raise AnnotationError(f"{path}: line {i}: bad times {start} {end}")
        rows.append((start, end, chord))
    return rows


def pop909_song_to_jams(
    song_id: str | int, pop909_dir: str | Path, structure_dir: str | Path
) -> jams.JAMS:
    """Convert one POP909 song's two phrase annotations to a JAMS.

    Parameters
    ----------
    song_id : str or int
        ``'001'`` ... ``'909'``.
    pop909_dir, structure_dir : str or Path
        The ``pop909/`` and ``pop909_structure/`` folders.

    Returns
    -------
    jams.JAMS
        Two ``segment_open`` annotations, annotators ``human_label1`` and
        ``human_label2``, and a ``beat`` annotation (:func:`pop909_beats`); labels are the phrase letters; each sandbox holds the label
        string, the origin beat, how it was found (``origin_method``) and the bar length
        in beats. ``file_metadata.duration``: see the module docstring.

    Raises
    ------
    AnnotationError
        Missing/unreadable files, a bad label string, or phrases that run more than
        :data:`~msaf_learned_ssm_jams.segments.DURATION_TOL` past the song's end.
    """
    sid = _normalise_id(song_id)
    pop909_dir, structure_dir = Path(pop909_dir), Path(structure_dir)
    grid = _song_grid(sid, pop909_dir, structure_dir)
    jam = jams.JAMS()
    jam.file_metadata.duration = grid["duration"]
    jam.file_metadata.title = str(grid["meta"].get("name") or sid)
    jam.file_metadata.artist = str(grid["meta"].get("artist") or "")
    jam.file_metadata.identifiers = {"pop909_id": sid}
    for annotator in ANNOTATORS:
        path = grid["paths"][annotator]
        phrases = _read_label(path)
        t = _beat_to_sec(grid, _phrase_beats(grid, phrases))
        intervals = np.column_stack([t[:-1], t[1:]])
        segments_to_jams(
            intervals, [p for p, _ in phrases], grid["duration"], annotator=annotator,
            jam=jam, source=str(path),
            sandbox={
                "label_string": "".join(f"{p}{b}" for p, b in phrases),
                "origin_beat": int(grid["origin"]),
                "origin_method": grid["origin_method"],
                "beats_per_bar": int(grid["bpb"]),
            },
        )
        jam.annotations[-1].annotation_metadata.corpus = "POP909 (Dai et al. 2020 structure)"
    times, positions = _beats_and_positions(grid, jam.file_metadata.duration)
    beat = jams.Annotation(namespace="beat", time=0, duration=grid["duration"])
    for t, position in zip(times, positions):
        beat.append(time=float(t), duration=0.0, value=int(position), confidence=1.0)
    beat.annotation_metadata = jams.AnnotationMetadata(
        annotator={"name": "beat_midi"}, corpus="POP909 (Dai et al. 2020)",
        data_source=str(grid["paths"]["beats"]),
        annotation_rules="beats of beat_midi.txt; value = position in the annotators' bar "
                         "(1 = downbeat), bars counted from the labels' origin")
    jam.annotations.append(beat)
    return jam


def _beats_and_positions(grid: dict, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """Beat times (s) of ``beat_midi.txt`` up to ``duration`` and their bar positions
    (1 ... beats_per_bar, 1 = downbeat) on the labels' bar grid."""
    times = grid["times"][grid["times"] <= duration]
    k = np.arange(len(times))
    return times, (k - grid["origin"]) % grid["bpb"] + 1


def pop909_beats(
    song_id: str | int, pop909_dir: str | Path, structure_dir: str | Path
) -> tuple[np.ndarray, np.ndarray]:
    """The beats of one song with their position in the bar.

    Returns
    -------
    times : np.ndarray, shape (n_beats,)
        Beat times (s) from ``beat_midi.txt``.
    positions : np.ndarray of int, shape (n_beats,)
        Position of each beat in its bar, 1 ... ``beats_per_bar`` (1 = downbeat), on the
        bar grid the structure annotators counted (see :func:`pop909_bar_grid`).
    """
    grid = _song_grid(_normalise_id(song_id), Path(pop909_dir), Path(structure_dir))
    return _beats_and_positions(grid, grid["duration"])


def check_pop909_alignment(
    song_id: str | int, pop909_dir: str | Path, structure_dir: str | Path
) -> dict:
    """Check that a song's labels, placed in time, agree with its beats.

    Returns
    -------
    dict
        ``song_id``; ``ok`` (all checks pass for both annotators); ``reasons`` (list of
        str, one per failed check, empty if ok); ``origin_beat``, ``origin_method``,
        ``beats_per_bar``, ``n_beats``; and per annotator a dict under its name with
        ``bars`` (summed), ``song_bars`` (downbeat flags from the origin on),
        ``downbeat_fraction``, ``start_offset_bars`` (origin - first downbeat, in bars),
        ``end_offset_bars`` (last phrase end - end of last beat, in bars), ``valid``
        (segments pass :func:`validate_segments`) and ``checks`` ({name: bool}).
        Unreadable input is reported as a failure with the error message, not raised.
    """
    sid = _normalise_id(song_id)
    out: dict = {"song_id": sid, "ok": False, "reasons": []}
    try:
        grid = _song_grid(sid, Path(pop909_dir), Path(structure_dir))
    except (AnnotationError, OSError, ValueError) as exc:
        out["reasons"].append(f"unreadable: {exc}")
        return out
    n = len(grid["times"])
    bpb = grid["bpb"]
    db_idx = np.flatnonzero(grid["downbeat"])
    out.update(
        origin_beat=grid["origin"], origin_method=grid["origin_method"],
        beats_per_bar=bpb, n_beats=n,
    )
    for annotator in ANNOTATORS:
        try:
            phrases = _read_label(grid["paths"][annotator])
        except AnnotationError as exc:
            out["reasons"].append(f"{annotator}: {exc}")
            out[annotator] = {"checks": {}}
            continue
        kb = _phrase_beats(grid, phrases)
        inside = kb[(kb >= 0) & (kb < n)]
        on_db = float(np.mean(grid["downbeat"][inside])) if inside.size else 0.0
        first_db = int(db_idx[0]) if db_idx.size else 0
        start_off = (grid["origin"] - first_db) / bpb
        end_off = (kb[-1] - n) / bpb  # n = index just past the last beat
        bars = int(sum(b for _, b in phrases))
        # POP909 measures are num_beats_per_measure beats; the annotators' bars bpb beats.
        song_bars = int(round(np.sum(db_idx >= grid["origin"]) * grid["measure"] / bpb))
        t = _beat_to_sec(grid, kb)
        try:
            validate_segments(
                np.column_stack([t[:-1], t[1:]]), [p for p, _ in phrases],
                duration=grid["duration"], source=str(grid["paths"][annotator]),
            )
            valid = True
        except AnnotationError as exc:
            valid = False
            out["reasons"].append(f"{annotator}: invalid segments: {exc}")
        checks = {
            "downbeats": on_db >= MIN_DOWNBEAT_FRACTION,
            "start": grid["origin"] >= 0 and start_off <= MAX_START_BARS,
            "end": -MAX_END_EARLY_BARS <= end_off <= MAX_END_LATE_BARS and valid,
            "bar_count": abs(bars - song_bars) <= MAX_BAR_COUNT_DIFF,
        }
        reasons = {
            "downbeats": f"{on_db:.0%} of phrase boundaries on downbeats",
            "start": f"first phrase starts {start_off:+.2f} bars from the first downbeat",
            "end": f"last phrase ends {end_off:+.2f} bars from the end of the last beat",
            "bar_count": f"{bars} bars labelled, {song_bars} downbeats from the origin",
        }
        out["reasons"] += [f"{annotator}: {reasons[k]}" for k, ok in checks.items() if not ok]
        out[annotator] = {
            "bars": bars, "song_bars": song_bars, "downbeat_fraction": on_db,
            "start_offset_bars": start_off, "end_offset_bars": end_off, "valid": valid,
            "checks": checks,
        }
    out["ok"] = not out["reasons"]
    return out
