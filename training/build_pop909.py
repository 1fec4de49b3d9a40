"""Render the POP909 MIDI corpus to audio, in MSAF's dataset layout, for training.

POP909 (Wang et al., ISMIR 2020) gives 909 piano arrangements of pop songs as MIDI with three
tracks (``MELODY``, ``BRIDGE``, ``PIANO``); Dai et al. (ISMIR 2020) annotated their phrase
structure.  The learned-SSM model (Peeters, ISMIR 2023) is trained on audio, so each song is
synthesised with FluidSynth and written as::

    OUT_DIR/audio/NNN.flac        mono, ``sample_rate`` Hz (22 050 by default), 16-bit FLAC
    OUT_DIR/references/NNN.jams   the structure reference (``msaf_learned_ssm_jams.pop909``)

Rendering every song with the same piano would teach the model one timbre.  Recordings vary,
so each song gets its own General MIDI programs for the three tracks, its own loudness, reverb
and (where more than one is installed) soundfont.  The choices are drawn from a random
generator seeded by ``(seed, song id)`` only, so a song's audio does not depend on which other
songs are rendered, in which order, or with how many processes.  They are stored in the JAMS
``sandbox`` under :data:`SANDBOX_KEY`, which is also how an interrupted build resumes: a song
whose two files exist and whose stored choices equal the current ones is skipped.

Command line::

    msaf-learned-ssm build-pop909 ../shared/data/pop909 ../shared/data/pop909_structure \\
        corpora/pop909_band --mode band --jobs 2

``--cues decorrelated`` (band mode only) places the arrangement's section cues (groove
changes, fills, crashes) at bars drawn independently of the annotated structure
(:func:`msaf_learned_ssm_training.arrangement.plan_arrangement`): a diagnostic corpus for
whether a model relies on those cues.  The choice is part of the rendering record, so a
resumed build re-renders a song made with the other kind of cues.

Requires the ``fluidsynth`` binary and the FluidR3 GM soundfont (Debian/Ubuntu:
``apt-get install fluidsynth fluid-soundfont-gm``; ``timgm6mb-soundfont`` adds a second
soundfont).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import mido
import numpy as np
import soundfile as sf

from msaf_learned_ssm_jams.fileio import PathLike, atomic_open

from .arrangement import CUES  # placements of the band arrangement's section cues


#: Bump when the rendering itself changes (pools, levels, processing), so that a resumed build
#: re-renders songs made by an older builder instead of mixing two versions in one corpus.
BUILDER_VERSION = 1

#: Key of the rendering record in the JAMS top-level ``sandbox``.
SANDBOX_KEY = "pop909_render"

#: Soundfonts looked for, in order; the first is required (``fluid-soundfont-gm``), the others
#: are used when installed (``timgm6mb-soundfont``, ``musescore-general-soundfont[-small]``).
DEFAULT_SOUNDFONTS: Tuple[str, ...] = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf3/MuseScore_General.sf3",
    "/usr/share/sounds/sf2/MuseScore_General.sf2",
    "/usr/share/sounds/sf2/sf_GMbank.sf2",  # csound-soundfont
)

INSTALL_HINT = (
    "install FluidSynth and the General MIDI soundfont, e.g. on Debian/Ubuntu "
    "`apt-get install fluidsynth fluid-soundfont-gm` (optionally also timgm6mb-soundfont)"
)

#: General MIDI program numbers (0-based) allowed for each POP909 track, with their names.
#: MELODY carries the sung line: voice-like leads and solo instruments.
#: BRIDGE carries counter-melodies and sustained harmony: strings, pads, guitars, e-pianos.
#: PIANO carries the accompaniment: keyboards, plucked guitars, harp.
PROGRAM_POOLS: Dict[str, Dict[int, str]] = {
    "melody": {
        52: "Choir Aahs",
        53: "Voice Oohs",
        54: "Synth Voice",
        85: "Lead 6 (voice)",
        73: "Flute",
        71: "Clarinet",
        68: "Oboe",
        40: "Violin",
        64: "Soprano Sax",
        65: "Alto Sax",
        66: "Tenor Sax",
        56: "Trumpet",
        16: "Drawbar Organ",
        19: "Church Organ",
        22: "Harmonica",
        24: "Acoustic Guitar (nylon)",
        26: "Electric Guitar (jazz)",
        27: "Electric Guitar (clean)",
        80: "Lead 1 (square)",
        81: "Lead 2 (sawtooth)",
    },
    "bridge": {
        48: "String Ensemble 1",
        49: "String Ensemble 2",
        50: "SynthStrings 1",
        51: "SynthStrings 2",
        88: "Pad 1 (new age)",
        89: "Pad 2 (warm)",
        90: "Pad 3 (polysynth)",
        91: "Pad 4 (choir)",
        94: "Pad 7 (halo)",
        24: "Acoustic Guitar (nylon)",
        25: "Acoustic Guitar (steel)",
        27: "Electric Guitar (clean)",
        4: "Electric Piano 1",
        5: "Electric Piano 2",
        11: "Vibraphone",
        61: "Brass Section",
    },
    "piano": {
        0: "Acoustic Grand Piano",
        1: "Bright Acoustic Piano",
        2: "Electric Grand Piano",
        3: "Honky-tonk Piano",
        4: "Electric Piano 1",
        5: "Electric Piano 2",
        6: "Harpsichord",
        24: "Acoustic Guitar (nylon)",
        25: "Acoustic Guitar (steel)",
        46: "Orchestral Harp",
    },
}

#: POP909 track name -> role in :data:`PROGRAM_POOLS`.
TRACK_ROLES: Dict[str, str] = {"MELODY": "melody", "BRIDGE": "bridge", "PIANO": "piano"}

#: Loudness range in dB applied to the synthesiser output (recordings differ in level; the
#: log-mel front end is not fully level invariant because of ``log(1 + 100 * mel)``).
GAIN_DB_RANGE: Tuple[float, float] = (-12.0, 0.0)

#: FluidSynth master gain before the per-song gain: about the level of the project's reference
#: renders (``reference_audio/pop909_00[12].flac``) at 0 dB.  Rendering is in float, so
#: FluidSynth never clips; the final level is made safe in :func:`peak_safe`.
FLUIDSYNTH_GAIN = 0.6

#: Reverb ranges (FluidSynth ``synth.reverb.room-size`` and ``synth.reverb.level``): from a
#: dry room to a large hall, as the recording spaces of real songs differ.
REVERB_ROOM_RANGE: Tuple[float, float] = (0.1, 0.8)
REVERB_LEVEL_RANGE: Tuple[float, float] = (0.3, 0.9)

#: Peak the written audio may reach (full scale 1.0), leaving headroom for 16-bit rounding.
PEAK_LIMIT = 0.98

#: Trailing-silence trim: samples below ``TRIM_TOP_DB`` dB under the peak count as silence;
#: ``TRIM_MARGIN_S`` seconds of decay are kept after the last louder sample.
TRIM_TOP_DB = 60.0
TRIM_MARGIN_S = 0.5

#: Seconds after which one FluidSynth call is treated as hung.
RENDER_TIMEOUT_S = 900


# --------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------


def find_fluidsynth(binary: Optional[str] = None) -> str:
    """Return the path of the ``fluidsynth`` executable.

    Parameters
    ----------
    binary : str, optional
        Explicit executable name or path; default ``"fluidsynth"`` on ``PATH``.

    Returns
    -------
    path : str
        Absolute path of the executable.

    Raises
    ------
    RuntimeError
        If it cannot be found, with installation instructions.
    """
    path = shutil.which(binary or "fluidsynth")
    if path is None:
        name = binary or "fluidsynth"
        raise RuntimeError(f"FluidSynth executable {name!r} not found: {INSTALL_HINT}")
    return path


def find_soundfonts(candidates: Sequence[PathLike] = DEFAULT_SOUNDFONTS) -> List[str]:
    """Return the installed soundfonts among ``candidates``, the first being required.

    Parameters
    ----------
    candidates : sequence of path-like
        Soundfont files; ``candidates[0]`` must exist, the others are kept when they exist.

    Returns
    -------
    soundfonts : list of str
        Existing soundfonts, in the order of ``candidates``, without duplicates of the same
        file name (the rendering record names a soundfont by file name).

    Raises
    ------
    RuntimeError
        If ``candidates[0]`` is missing, with installation instructions.
    """
    if not candidates:
        raise ValueError("at least one soundfont is needed")
    first = Path(candidates[0])
    if not first.is_file():
        raise RuntimeError(f"soundfont {str(first)!r} not found: {INSTALL_HINT}")
    found: List[str] = []
    names = set()
    for cand in candidates:
        path = Path(cand)
        if path.is_file() and path.name not in names:
            found.append(str(path))
            names.add(path.name)
    return found


def fluidsynth_version(binary: str) -> str:
    """Return FluidSynth's version string, e.g. ``"2.3.1"`` (``"unknown"`` if unreadable)."""
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    for line in out.splitlines():
        # "FluidSynth runtime version 2.3.1"
        if "version" in line.lower():
            return line.split()[-1]
    return "unknown"


# --------------------------------------------------------------------------------------------
# Per-song choices
# --------------------------------------------------------------------------------------------


def song_rng(song_id: str, seed: int = 0) -> np.random.Generator:
    """Random generator for one song, seeded by ``(seed, song_id)`` only.

    ``crc32`` (not ``hash``, which Python salts per process) turns the id into a stable
    integer, so the stream is the same in every process and on every run.
    """
    key = zlib.crc32(song_id.encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence([int(seed), key]))


def choose_rendering(
    song_id: str,
    seed: int = 0,
    soundfonts: Sequence[PathLike] = ("FluidR3_GM.sf2",),
) -> Dict[str, Any]:
    """Draw the rendering choices of one song, reproducibly.

    Parameters
    ----------
    song_id : str
        POP909 id, e.g. ``"001"``.
    seed : int
        Global seed of the corpus.
    soundfonts : sequence of path-like
        Available soundfonts (at least one); only their file names enter the result.

    Returns
    -------
    choices : dict
        JSON-ready record: ``song_id``, ``seed``, ``builder_version``, ``programs``
        (role -> GM program, 0-based), ``program_names`` (role -> name), ``gain_db`` (dB,
        in :data:`GAIN_DB_RANGE`, 0.1 dB steps), ``reverb`` (``room_size``, ``level`` in
        [0, 1]), ``fluidsynth_gain`` and ``soundfont`` (file name).

    Notes
    -----
    Values are drawn in a fixed order and the soundfont last, so adding a soundfont to the
    system changes only the soundfont of some songs, not their programs or levels.
    """
    if not soundfonts:
        raise ValueError("at least one soundfont is needed")
    rng = song_rng(song_id, seed)
    programs: Dict[str, int] = {}
    for role in ("melody", "bridge", "piano"):
        pool = sorted(PROGRAM_POOLS[role])
        programs[role] = int(pool[int(rng.integers(len(pool)))])
    # Rounded so that the record survives a JSON round trip exactly (resume compares them).
    gain_db = round(float(rng.uniform(*GAIN_DB_RANGE)), 1)
    room = round(float(rng.uniform(*REVERB_ROOM_RANGE)), 2)
    level = round(float(rng.uniform(*REVERB_LEVEL_RANGE)), 2)
    names = [Path(s).name for s in soundfonts]
    soundfont = names[min(int(rng.uniform() * len(names)), len(names) - 1)]
    return {
        "song_id": song_id,
        "seed": int(seed),
        "builder_version": BUILDER_VERSION,
        "programs": programs,
        "program_names": {r: PROGRAM_POOLS[r][p] for r, p in programs.items()},
        "gain_db": gain_db,
        "reverb": {"room_size": room, "level": level},
        "fluidsynth_gain": FLUIDSYNTH_GAIN,
        "soundfont": soundfont,
    }


# --------------------------------------------------------------------------------------------
# MIDI and audio processing
# --------------------------------------------------------------------------------------------


def assign_programs(midi: mido.MidiFile, programs: Mapping[str, int]) -> mido.MidiFile:
    """Return a copy of ``midi`` whose POP909 tracks play the given GM programs.

    Every ``program_change`` is removed from the tracks named in :data:`TRACK_ROLES`, and one
    ``program_change`` per channel used by the track is put at its start, so no later
    change in the file can undo the choice.

    Parameters
    ----------
    midi : mido.MidiFile
        Source file (not modified).
    programs : mapping
        Role (``"melody"``, ``"bridge"``, ``"piano"``) -> GM program in [0, 127].

    Returns
    -------
    midi : mido.MidiFile
        The rewritten copy.

    Raises
    ------
    ValueError
        If two tracks with different programs share a MIDI channel (a channel plays one
        program at a time, so the choice could not be honoured), or a program is out of range.
    """
    out = mido.MidiFile(type=midi.type, ticks_per_beat=midi.ticks_per_beat)
    channel_program: Dict[int, int] = {}
    for track in midi.tracks:
        role = TRACK_ROLES.get(track.name.strip().upper())
        if role is None or role not in programs:
            out.tracks.append(track.copy())
            continue
        program = int(programs[role])
        if not 0 <= program <= 127:
            raise ValueError(f"GM program {program} for {role} is outside 0..127")
        channels = sorted({m.channel for m in track if not m.is_meta and hasattr(m, "channel")})
        for ch in channels:
            if channel_program.setdefault(ch, program) != program:
                raise ValueError(f"MIDI channel {ch} is shared by tracks with different programs")
        new = mido.MidiTrack()
        carry = 0  # delta time of removed messages is handed to the next kept message
        for msg in track:
            if msg.type == "program_change":
                carry += msg.time
                continue
            new.append(msg.copy(time=msg.time + carry))
            carry = 0
        # After the track name (meta messages at tick 0) would be tidier, but any position at
        # tick 0 before the first note works; the front is simplest.
        pcs = [mido.Message("program_change", channel=ch, program=program, time=0)
               for ch in channels]
        new[0:0] = pcs
        out.tracks.append(new)
    return out


def render_midi(
    midi_path: PathLike,
    soundfont: PathLike,
    wav_path: PathLike,
    sample_rate: int = 22050,
    gain: float = FLUIDSYNTH_GAIN,
    reverb: Optional[Mapping[str, float]] = None,
    binary: str = "fluidsynth",
    effects: bool = True,
) -> None:
    """Synthesise a MIDI file to a 32-bit float WAV file with the FluidSynth CLI.

    Parameters
    ----------
    midi_path, soundfont, wav_path : path-like
        Input MIDI, soundfont and output WAV.
    sample_rate : int
        Synthesis rate in Hz.
    gain : float
        FluidSynth master gain (linear, ``-g``).
    reverb : mapping, optional
        ``room_size`` and ``level`` in [0, 1]; FluidSynth's defaults when omitted.
    binary : str
        FluidSynth executable.
    effects : bool
        False turns FluidSynth's reverb and chorus off (band stems get theirs in the mix).

    Raises
    ------
    RuntimeError
        If FluidSynth fails, times out or writes no audio; the message holds its stderr.
    """
    cmd = [binary, "-ni", "-q", "-g", f"{gain:.6g}", "-r", str(int(sample_rate))]
    # Load only the samples the song uses: an .sf3 soundfont (MuseScore General) otherwise
    # decodes every sample at start-up (9 s against 2 s measured here).
    cmd += ["-o", "synth.dynamic-sample-loading=1"]
    if not effects:
        cmd += ["-R", "0", "-C", "0"]
    # Float output: a loud passage cannot clip inside FluidSynth; levels are set afterwards.
    cmd += ["-O", "float", "-T", "wav"]
    if reverb is not None:
        cmd += ["-o", f"synth.reverb.room-size={float(reverb['room_size']):.4g}"]
        cmd += ["-o", f"synth.reverb.level={float(reverb['level']):.4g}"]
    cmd += ["-F", str(wav_path), str(soundfont), str(midi_path)]
    try:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=RENDER_TIMEOUT_S, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"fluidsynth timed out after {RENDER_TIMEOUT_S} s") from exc
    if proc.returncode != 0 or not Path(wav_path).is_file() or Path(wav_path).stat().st_size <= 44:
        tail = (proc.stderr or proc.stdout or "").strip()[-500:]
        detail = tail or "no output file"
        raise RuntimeError(f"fluidsynth failed (exit {proc.returncode}): {detail}")


def to_mono(y: np.ndarray) -> np.ndarray:
    """Downmix audio to mono by averaging channels.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,) or (n_samples, n_channels)

    Returns
    -------
    y_mono : np.ndarray, shape (n_samples,), float32
    """
    y = np.asarray(y, dtype=np.float32)
    return y if y.ndim == 1 else y.mean(axis=1, dtype=np.float32)


def apply_gain(y: np.ndarray, gain_db: float) -> np.ndarray:
    """Scale audio by ``gain_db`` decibels. ``y`` : shape (n_samples,); returns float32."""
    factor = np.float32(10.0 ** (gain_db / 20.0))
    return (np.asarray(y, dtype=np.float32) * factor).astype(np.float32)


def peak_safe(y: np.ndarray, limit: float = PEAK_LIMIT) -> Tuple[np.ndarray, float]:
    """Scale audio down, only if needed, so that its peak is at most ``limit``.

    A uniform scale (not clipping) keeps the waveform undistorted; quiet songs are left as
    they are so the drawn loudness survives.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
    limit : float
        Largest allowed absolute sample value (full scale 1.0).

    Returns
    -------
    y_safe : np.ndarray, shape (n_samples,), float32
    scale : float
        Factor applied (1.0 when none was needed).
    """
    y = np.asarray(y, dtype=np.float32)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak <= limit:
        return y, 1.0
    scale = limit / peak
    return (y * np.float32(scale)).astype(np.float32), scale


def resample(y: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample ``y`` (shape (n_samples,)) from ``orig_sr`` to ``target_sr`` Hz if they differ.

    FluidSynth normally synthesises at the requested rate; this guards against a build that
    clamps or ignores ``-r``.
    """
    if int(orig_sr) == int(target_sr):
        return y
    import librosa  # imported lazily: heavy, and normally not needed

    return librosa.resample(y, orig_sr=int(orig_sr), target_sr=int(target_sr)).astype(np.float32)


def trim_trailing_silence(
    y: np.ndarray,
    sample_rate: int,
    min_duration: float = 0.0,
    top_db: float = TRIM_TOP_DB,
    margin: float = TRIM_MARGIN_S,
) -> np.ndarray:
    """Cut the digital silence FluidSynth appends after the last note has died away.

    FluidSynth's file rendering can run many seconds (up to about 20 s in POP909) past the
    audible end, depending on the instruments' release; real recordings do not end that way,
    and that silence lies outside every annotated segment.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
    sample_rate : int
        Hz.
    min_duration : float
        Seconds never cut (the MIDI length, so the annotated time span stays covered).
    top_db : float
        Samples more than ``top_db`` dB below the peak count as silence.
    margin : float
        Seconds kept after the last non-silent sample.

    Returns
    -------
    y_trimmed : np.ndarray, shape (n_kept,)
        A view of the first ``n_kept <= n_samples`` samples.
    """
    if y.size == 0:
        return y
    threshold = float(np.max(np.abs(y))) * 10.0 ** (-top_db / 20.0)
    loud = np.flatnonzero(np.abs(y) > threshold)
    last = int(loud[-1]) + 1 if loud.size else 0
    end = max(last + int(round(margin * sample_rate)), int(np.ceil(min_duration * sample_rate)))
    return y[:min(end, y.shape[0])]


def annotation_end(jam: Any) -> float:
    """Latest ``time + duration`` over every observation of a JAMS (0.0 if none), in seconds."""
    end = 0.0
    for ann in jam.annotations:
        for obs in ann.data:
            end = max(end, float(obs.time) + float(obs.duration or 0.0))
    return end


def write_flac_atomic(path: PathLike, y: np.ndarray, sample_rate: int) -> None:
    """Write mono audio as 16-bit FLAC atomically (a reader or a resumed build sees either no
    file or a complete one). ``y``: shape (n_samples,), in [-1, 1]; ``sample_rate`` in Hz."""
    with atomic_open(path, "wb") as handle:
        sf.write(handle, y, int(sample_rate), format="FLAC", subtype="PCM_16")


def write_jams_atomic(path: PathLike, jam: Any) -> None:
    """Save a :class:`jams.JAMS` atomically."""
    with atomic_open(path, "w") as handle:
        jam.save(handle)


# --------------------------------------------------------------------------------------------
# Synthesis
# --------------------------------------------------------------------------------------------

#: Rendering modes of :func:`render_song`.
MODES = ("piano", "band")


def check_mode(mode: str, cues: str = "labelled") -> None:
    """Raise ValueError (one line) for an unknown mode or cues, or cues other than
    ``"labelled"`` outside the band mode (a piano render has no cues to place)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if cues not in CUES:
        raise ValueError(f"cues must be one of {CUES}, got {cues!r}")
    if cues != "labelled" and mode != "band":
        raise ValueError(f"cues={cues!r} needs the band mode (got mode={mode!r})")


def choose_song_rendering(song_id: str, seed: int, soundfonts: Sequence[PathLike],
                          mode: str = "piano", cues: str = "labelled") -> Dict[str, Any]:
    """The rendering record of one song in ``mode`` (see :func:`render_song`), before synthesis.

    A band record holds ``cues``; a piano record has none (and refuses any but labelled).
    """
    check_mode(mode, cues)
    if mode == "piano":
        return choose_rendering(song_id, seed, soundfonts)
    from .band_render import BAND_BUILDER_VERSION, choose_band_rendering

    band = choose_band_rendering(song_id, seed, [str(s) for s in soundfonts])
    return {"song_id": song_id, "seed": int(seed), "mode": "band",
            "builder_version": BAND_BUILDER_VERSION, "gain_db": band["gain_db"],
            "fluidsynth_gain": FLUIDSYNTH_GAIN, "band": band, "cues": cues}


def _render_to_array(midi: mido.MidiFile, soundfont: str, sample_rate: int, gain: float,
                     binary: str, reverb: Optional[Mapping[str, float]] = None,
                     effects: bool = True) -> Tuple[np.ndarray, int]:
    """Synthesise a MIDI object; returns float32 samples (n_samples, n_channels) and the rate."""
    with tempfile.TemporaryDirectory(prefix="pop909_") as tmp:
        mid_path, wav_path = Path(tmp) / "song.mid", Path(tmp) / "song.wav"
        midi.save(str(mid_path))
        render_midi(mid_path, soundfont, wav_path, sample_rate, gain, reverb, binary, effects)
        y, sr = sf.read(str(wav_path), dtype="float32", always_2d=True)
    return y, int(sr)


def _soundfont_path(soundfonts: Sequence[PathLike], name: str) -> str:
    return next(str(s) for s in soundfonts if Path(s).name == name)


def render_piano_audio(source: mido.MidiFile, choices: Mapping[str, Any],
                       soundfonts: Sequence[PathLike], sample_rate: int, binary: str
                       ) -> Tuple[np.ndarray, int, Dict[str, Any]]:
    """POP909's three tracks with the drawn programs, one render. Returns (y, sr, record extras)."""
    sf_path = _soundfont_path(soundfonts, choices["soundfont"])
    midi = assign_programs(source, choices["programs"])
    y, sr = _render_to_array(midi, sf_path, sample_rate, choices["fluidsynth_gain"], binary,
                             choices["reverb"])
    return y, sr, {"soundfont_path": sf_path}


def render_band_audio(song_id: str, source: mido.MidiFile, pop909_dir: PathLike,
                      structure_dir: PathLike, choices: Mapping[str, Any],
                      soundfonts: Sequence[PathLike], sample_rate: int, binary: str
                      ) -> Tuple[np.ndarray, int, Dict[str, Any]]:
    """The band render of one song: stems arranged, synthesised apart, then mixed.

    Returns
    -------
    y : np.ndarray, shape (n_samples,), float32
        The mono mix at ``sample_rate``.
    sr : int
    extras : dict
        ``arrangement`` (the drawn plan, with ``choices["cues"]``) for the rendering record.
    """
    from msaf_learned_ssm_jams.pop909 import pop909_bar_grid, read_pop909_chords

    from .band_render import band_stem_midis, mix_stems

    band = choices["band"]
    grid = pop909_bar_grid(song_id, pop909_dir, structure_dir)
    chords = read_pop909_chords(Path(pop909_dir) / song_id / "chord_midi.txt")
    midis, plan = band_stem_midis(source, grid, chords, band, song_id, int(choices["seed"]),
                                  cues=_cues(choices))
    stems = {}
    for part, midi in midis.items():
        sf_path = _soundfont_path(soundfonts, band["soundfonts"][part])
        y, sr = _render_to_array(midi, sf_path, sample_rate, choices["fluidsynth_gain"], binary,
                                 effects=False)
        y = resample(y.T.copy(), sr, sample_rate) if sr != sample_rate else y.T.copy()
        stems[part] = y
    mix = mix_stems(stems, band, sample_rate)
    return mix, sample_rate, {"arrangement": plan}


# --------------------------------------------------------------------------------------------
# One song
# --------------------------------------------------------------------------------------------


def _cues(record: Mapping[str, Any]) -> Optional[str]:
    """A record's cues: band records made before cues were recorded are ``"labelled"``."""
    if record.get("mode") != "band":
        return record.get("cues")
    return record.get("cues", "labelled")


def _comparable(record: Mapping[str, Any]) -> Dict[str, Any]:
    # Keys that define the audio; the FluidSynth version and the peak scale are recorded but
    # not compared (an upgraded FluidSynth should not force a full re-render).
    keys = ("song_id", "seed", "builder_version", "programs", "gain_db", "reverb",
            "fluidsynth_gain", "soundfont", "sample_rate", "mode", "band")
    out = {k: record.get(k) for k in keys}
    out["cues"] = _cues(record)
    return json.loads(json.dumps(out))


def is_rendered(audio_path: PathLike, jams_path: PathLike, choices: Mapping[str, Any]) -> bool:
    """Whether a song's audio and reference exist and were made with ``choices``.

    Parameters
    ----------
    audio_path, jams_path : path-like
        The song's FLAC and JAMS files.
    choices : mapping
        Current rendering record (:func:`choose_rendering` plus ``sample_rate``).

    Returns
    -------
    done : bool
        True if both files are readable, the JAMS sandbox holds the same choices, and the
        audio's duration equals the JAMS ``file_metadata.duration`` (to 1 ms).
    """
    audio_path, jams_path = Path(audio_path), Path(jams_path)
    if not (audio_path.is_file() and jams_path.is_file()):
        return False
    try:
        with open(jams_path, encoding="utf-8") as fh:
            stored = json.load(fh)
        record = stored.get("sandbox", {}).get(SANDBOX_KEY)
        if not isinstance(record, dict) or _comparable(record) != _comparable(choices):
            return False
        info = sf.info(str(audio_path))
        duration = stored.get("file_metadata", {}).get("duration")
        return (
            duration is not None
            and info.samplerate == int(choices["sample_rate"])
            and abs(info.frames / info.samplerate - float(duration)) < 1e-3
        )
    except (OSError, ValueError, RuntimeError, sf.LibsndfileError):
        return False


def render_song(
    song_id: str,
    pop909_dir: PathLike,
    structure_dir: PathLike,
    out_dir: PathLike,
    seed: int = 0,
    sample_rate: int = 22050,
    soundfonts: Optional[Sequence[PathLike]] = None,
    binary: Optional[str] = None,
    version: Optional[str] = None,
    refresh_reference: bool = False,
    mode: str = "piano", cues: str = "labelled",
) -> Tuple[str, str, str]:
    """Render one POP909 song and write its FLAC and JAMS, unless already done.

    Parameters
    ----------
    song_id : str
        e.g. ``"001"``.
    pop909_dir, structure_dir, out_dir : path-like
        POP909 root, structure-annotation root, corpus root (``audio/``, ``references/``).
    seed : int
        Global seed (see :func:`choose_rendering`).
    sample_rate : int
        Output rate in Hz.
    soundfonts : sequence of path-like, optional
        Available soundfonts; default :func:`find_soundfonts`.
    binary : str, optional
        FluidSynth executable; default :func:`find_fluidsynth`.
    version : str, optional
        FluidSynth version for the record; queried when omitted.
    refresh_reference : bool
        For a song already rendered, rebuild its JAMS from the adapter (keeping the audio and
        the stored rendering record) instead of skipping it: for when the annotation adapter
        has changed but the audio has not.
    mode : {"piano", "band"}
        ``"piano"``: POP909's three tracks as one FluidSynth render (builder version 1);
        ``"band"``: with bass and drums, stems mixed (:mod:`msaf_learned_ssm_training.band_render`).
    cues : {"labelled", "decorrelated"}
        Band mode: the arrangement's section cues on the structure or independent of it
        (:func:`msaf_learned_ssm_training.arrangement.plan_arrangement`); recorded, so a
        song rendered with the other kind is rendered again, not skipped.

    Returns
    -------
    result : (song_id, status, reason)
        ``status`` is ``"rendered"``, ``"skipped"``, ``"refreshed"`` or ``"failed"``;
        ``reason`` explains a failure (empty otherwise).  Errors are returned, not raised, so
        one bad song cannot stop a parallel build.
    """
    try:
        binary = binary or find_fluidsynth()
        soundfonts = list(soundfonts) if soundfonts else find_soundfonts()
        out = Path(out_dir)
        audio_path = out / "audio" / f"{song_id}.flac"
        jams_path = out / "references" / f"{song_id}.jams"
        choices = choose_song_rendering(song_id, seed, soundfonts, mode, cues)
        choices["sample_rate"] = int(sample_rate)
        from msaf_learned_ssm_jams.pop909 import pop909_song_to_jams

        if is_rendered(audio_path, jams_path, choices):
            if not refresh_reference:
                return song_id, "skipped", ""
            with open(jams_path, encoding="utf-8") as fh:
                stored = json.load(fh)
            jam = pop909_song_to_jams(song_id, pop909_dir, structure_dir)
            jam.sandbox.update(**{SANDBOX_KEY: stored["sandbox"][SANDBOX_KEY]})
            jam.file_metadata.duration = float(stored["file_metadata"]["duration"])
            write_jams_atomic(jams_path, jam)
            return song_id, "refreshed", ""

        # The reference first: a song whose labels cannot be read is not worth synthesising.
        jam = pop909_song_to_jams(song_id, pop909_dir, structure_dir)

        source = mido.MidiFile(str(Path(pop909_dir) / song_id / f"{song_id}.mid"))
        if mode == "band":
            y, sr, extra = render_band_audio(song_id, source, pop909_dir, structure_dir, choices,
                                             soundfonts, sample_rate, binary)
        else:
            y, sr, extra = render_piano_audio(source, choices, soundfonts, sample_rate, binary)
        y = resample(to_mono(y), sr, sample_rate)
        # The audio must span both the music and every annotated segment (the last labelled
        # bar can end a little after the last MIDI event); pad with silence in the rare case
        # that the render itself is shorter.
        min_duration = max(float(source.length), annotation_end(jam))
        y = trim_trailing_silence(y, sample_rate, min_duration=min_duration)
        n_min = int(np.ceil(min_duration * sample_rate))
        if y.shape[0] < n_min:
            y = np.pad(y, (0, n_min - y.shape[0]))
        if y.size == 0 or not np.all(np.isfinite(y)):
            raise RuntimeError("fluidsynth produced empty or non-finite audio")
        y, scale = peak_safe(apply_gain(y, choices["gain_db"]))
        duration = y.shape[0] / float(sample_rate)

        record = dict(choices)
        record.update(extra)
        record.update(fluidsynth_version=version or fluidsynth_version(binary),
                      peak_scale=round(scale, 6))
        jam.sandbox.update(**{SANDBOX_KEY: record})
        jam.file_metadata.duration = duration

        audio_path.parent.mkdir(parents=True, exist_ok=True)
        jams_path.parent.mkdir(parents=True, exist_ok=True)
        # Audio first, JAMS last: the JAMS (with its record) marks the song as complete.
        write_flac_atomic(audio_path, y, sample_rate)
        write_jams_atomic(jams_path, jam)
        return song_id, "rendered", ""
    except Exception as exc:  # noqa: BLE001 - every failure is reported by the caller
        return song_id, "failed", f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------


def build_pop909_corpus(
    pop909_dir: PathLike,
    structure_dir: PathLike,
    out_dir: PathLike,
    song_ids: Optional[Sequence[str]] = None,
    seed: int = 0,
    n_jobs: int = 2,
    sample_rate: int = 22050,
    *,
    refresh_references: bool = False,
    mode: str = "piano",
    cues: str = "labelled",
) -> Dict[str, Any]:
    """Render POP909 songs into ``out_dir/audio/*.flac`` and ``out_dir/references/*.jams``.

    Resumable: songs already rendered with the same choices are skipped.  Failures do not
    stop the build; they are collected with their reasons.

    Parameters
    ----------
    pop909_dir : path-like
        POP909 root (``NNN/NNN.mid``).
    structure_dir : path-like
        Structure-annotation root (``NNN/human_label1.txt`` ...).
    out_dir : path-like
        Corpus root, created if needed.
    song_ids : sequence of str, optional
        Songs to render; default every song with MIDI and annotations.
    seed : int
        Global seed of the per-song choices.
    n_jobs : int
        Worker processes (1 renders in this process).
    sample_rate : int
        Output rate in Hz.
    refresh_references : bool
        Rebuild the JAMS of songs already rendered (audio kept); see :func:`render_song`.
    mode : {"piano", "band"}
        What to render (see :func:`render_song`).
    cues : {"labelled", "decorrelated"}
        Band mode only: where the arrangement's section cues go (see :func:`render_song`).

    Returns
    -------
    summary : dict
        ``rendered``, ``skipped``, ``refreshed`` (lists of ids), ``failed`` ({id: reason}),
        ``soundfonts`` (file names used), ``fluidsynth_version``.

    Raises
    ------
    ValueError
        For an unknown ``mode`` or ``cues``, or decorrelated cues outside the band mode.
    RuntimeError
        If FluidSynth or the FluidR3 GM soundfont is missing (with install instructions).
    ImportError
        If ``msaf_learned_ssm_jams.pop909`` cannot be imported.
    """
    from tqdm import tqdm

    check_mode(mode, cues)
    binary = find_fluidsynth()
    soundfonts = find_soundfonts()
    version = fluidsynth_version(binary)
    # Fail now, not once per song, if the reference adapter is unavailable.
    from msaf_learned_ssm_jams.pop909 import pop909_song_to_jams  # noqa: F401

    if song_ids is None:
        from msaf_learned_ssm_jams.pop909 import pop909_song_ids

        song_ids = pop909_song_ids(structure_dir, pop909_dir)
    song_ids = [str(s) for s in song_ids]
    out = Path(out_dir)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    (out / "references").mkdir(parents=True, exist_ok=True)

    kwargs = dict(pop909_dir=str(pop909_dir), structure_dir=str(structure_dir), out_dir=str(out),
                  seed=seed, sample_rate=sample_rate, soundfonts=soundfonts, binary=binary,
                  version=version, refresh_reference=refresh_references, mode=mode, cues=cues)
    results: List[Tuple[str, str, str]] = []
    # Redirected to a log file (nohup), a bar redrawn ten times a second only bloats the log.
    bar = tqdm(total=len(song_ids), desc="POP909", unit="song",
               mininterval=0.1 if sys.stderr.isatty() else 10.0)
    try:
        if n_jobs <= 1:
            for sid in song_ids:
                results.append(render_song(sid, **kwargs))
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=n_jobs) as pool:
                futures = {pool.submit(render_song, sid, **kwargs): sid for sid in song_ids}
                for fut in as_completed(futures):
                    try:
                        results.append(fut.result())
                    except Exception as exc:  # noqa: BLE001 - e.g. a worker killed by the OS
                        results.append((futures[fut], "failed", f"{type(exc).__name__}: {exc}"))
                    bar.update()
    finally:
        bar.close()

    summary: Dict[str, Any] = {
        "rendered": sorted(s for s, st, _ in results if st == "rendered"),
        "skipped": sorted(s for s, st, _ in results if st == "skipped"),
        "refreshed": sorted(s for s, st, _ in results if st == "refreshed"),
        "failed": {s: r for s, st, r in sorted(results) if st == "failed"},
        "soundfonts": [Path(s).name for s in soundfonts],
        "fluidsynth_version": version,
    }
    return summary
