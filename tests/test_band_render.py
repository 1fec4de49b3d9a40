"""Band renders: the drum and bass arrangement, the per-song sound choices, stem mixing, and a
real POP909 song rendered end to end (FluidSynth)."""

from __future__ import annotations

import collections
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

mido = pytest.importorskip("mido", reason="mido (the [train] extra) writes the MIDI stems")
pytest.importorskip("pedalboard", reason="pedalboard (the [train] extra) mixes the stems")

from msaf_learned_ssm_training import arrangement as arr  # noqa: E402
from msaf_learned_ssm_training import band_render as br  # noqa: E402
from msaf_learned_ssm_training import build_pop909 as bp  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
POP909, STRUCTURE = DATA / "pop909", DATA / "pop909_structure"


def _grid(labels_and_bars, bpb=4, tempo_bpm=120.0):
    """A regular bar grid with phrases given as [(label, n_bars), ...]."""
    labels, starts, ends = [], [], []
    for label, n in labels_and_bars:
        labels += [label] * n
        starts += [True] + [False] * (n - 1)
        ends += [False] * (n - 1) + [True]
    n_bars = len(labels)
    beat_times = np.arange(bpb * n_bars + 1) * 60.0 / tempo_bpm
    return {"beat_times": beat_times, "beats_per_bar": bpb,
            "bar_start_beats": bpb * np.arange(n_bars), "bar_labels": labels,
            "phrase_start": np.array(starts), "phrase_end": np.array(ends)}


def _plan(grid, seed=0):
    return arr.plan_arrangement(grid["bar_labels"], grid["phrase_start"], grid["phrase_end"],
                                grid["beats_per_bar"], np.random.default_rng(seed))


def test_plan_is_seeded_json_ready_and_shares_grooves_by_label():
    grid = _grid([("i", 4), ("A", 8), ("B", 8), ("A", 8), ("o", 4)])
    plan = _plan(grid, 3)
    assert plan == _plan(grid, 3) and json.loads(json.dumps(plan)) == plan
    assert set(plan["grooves"]) == {"i", "A", "B", "o"}
    assert plan["grooves"]["A"] in arr.GROOVES[4] and plan["grooves"]["B"] in arr.GROOVES[4]
    # Crashes only where a phrase starts.
    assert all(grid["phrase_start"][b] for b in plan["crashes"])


def test_fills_favour_phrase_ends_without_marking_only_them():
    grid = _grid([("A", 8), ("B", 8)] * 20)
    ends, others, n_ends, n_others = 0, 0, 0, 0
    for seed in range(20):
        fills = set(_plan(grid, seed)["fills"])
        is_end = grid["phrase_end"][:-1]
        n_ends += int(is_end.sum())
        n_others += int((~is_end).sum())
        ends += sum(1 for b in fills if grid["phrase_end"][b])
        others += sum(1 for b in fills if not grid["phrase_end"][b])
    rate_end, rate_other = ends / n_ends, others / n_others
    assert abs(rate_end - arr.FILL_P_PHRASE_END) < 0.08
    assert 0.03 < rate_other < 0.2        # fills elsewhere too: a fill is a cue, not a label
    assert others > 0.5 * ends            # ... and not rare next to the phrase-end ones


def test_triple_metre_gets_triple_grooves_and_twelve_steps():
    grid = _grid([("A", 8), ("B", 8)], bpb=3)
    plan = _plan(grid)
    assert all(g is None or g in arr.GROOVES[3] for g in plan["grooves"].values())
    notes = arr.drum_notes(plan, grid["beat_times"], grid["bar_start_beats"], grid["bar_labels"],
                           3, np.random.default_rng(0))
    bar = 1.5  # 3 beats at 120 BPM
    kicks = [n.start for n in notes if n.pitch == arr.KICK]
    # Kicks on the bar's first step fall on the 1.5 s bar grid (within the 4 ms humanising).
    on_bar = [t for t in kicks if abs(t / bar - round(t / bar)) * bar < 0.02]
    assert len(on_bar) >= 16 * 0.9


def test_bass_follows_chord_roots_and_stops_at_changes():
    grid = _grid([("A", 4)])
    plan = _plan(grid)
    plan["bass"]["A"] = {"pattern": "whole", "octave": 1, "staccato": 1.0, "rest": False}
    chords = [(0.0, 3.0, "C:maj"), (3.0, 8.0, "G:min"), (8.0, 9.0, "N")]
    notes = arr.bass_notes(plan, grid["beat_times"], grid["bar_start_beats"], grid["bar_labels"],
                           4, chords, np.random.default_rng(0))
    starts = [round(n.start, 3) for n in notes]
    assert starts == [0.0, 2.0, 3.0, 4.0, 6.0]  # bar starts, and the change at 3.0 s
    assert [n.pitch % 12 for n in notes] == [0, 0, 7, 7, 7]
    assert notes[1].start + notes[1].duration <= 3.0 + 1e-6  # cut at the chord change
    assert arr.chord_root("Bb:min") == 10 and arr.chord_root("F#:7") == 6
    assert arr.chord_root("N") is None


def test_notes_to_midi_keeps_times_in_seconds(tmp_path):
    notes = [arr.Note(0.5, 0.25, 60, 100), arr.Note(1.75, 0.5, 62, 90)]
    midi = arr.notes_to_midi(notes, channel=3, program=33, controls=[(1.0, 11, 80)])
    path = tmp_path / "x.mid"
    midi.save(str(path))
    t, on = 0.0, []
    for msg in mido.MidiFile(str(path)):
        t += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            on.append((round(t, 3), msg.note, msg.channel))
    assert on == [(0.5, 60, 3), (1.75, 62, 3)]


def test_track_messages_apply_the_tempo_map():
    src = mido.MidiFile(type=1, ticks_per_beat=480)
    conductor = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=1_000_000, time=0)])  # 60 BPM
    mel = mido.MidiTrack([mido.MetaMessage("track_name", name="MELODY", time=0),
                          mido.Message("program_change", program=5, time=0),
                          mido.Message("note_on", note=64, velocity=90, time=960),
                          mido.Message("note_off", note=64, velocity=0, time=480)])
    src.tracks.extend([conductor, mel])
    msgs = arr.track_messages(src, "melody")
    assert [(round(t, 3), m.type) for t, m in msgs] == [(2.0, "note_on"), (3.0, "note_off")]


def test_band_choices_are_seeded_varied_and_exact_in_json():
    fonts = ["FluidR3_GM.sf2", "TimGM6mb.sf2", "MuseScore_General.sf3", "sf_GMbank.sf2"]
    a = br.choose_band_rendering("042", 0, fonts)
    assert a == br.choose_band_rendering("042", 0, fonts) and json.loads(json.dumps(a)) == a
    many = [br.choose_band_rendering(f"{i:03d}", 0, fonts) for i in range(1, 121)]
    for part in br.BAND_PARTS:
        assert {c["programs"][part] for c in many} <= set(br.BAND_PROGRAM_POOLS[part])
    assert len({c["programs"]["melody"] for c in many}) >= 10
    used = collections.Counter(c["soundfonts"][p] for c in many for p in br.BAND_PARTS)
    assert set(used) == set(fonts)
    mixed = sum(len(set(c["soundfonts"].values())) > 1 for c in many)
    assert 0.3 < mixed / len(many) < 1.0  # some songs take a part from another soundfont


def test_mix_is_mono_finite_and_limited():
    sr = 22050
    rng = np.random.default_rng(0)
    t = np.arange(sr * 3) / sr
    stems = {p: (0.5 * np.sin(2 * np.pi * (110 * (i + 1)) * t) * rng.uniform(0.1, 1)
                 ).astype(np.float32)[None].repeat(2, 0) for i, p in enumerate(br.BAND_PARTS)}
    stems["drums"] = stems["drums"][:, : sr]  # a shorter stem is padded
    choices = br.choose_band_rendering("001", 0, ["FluidR3_GM.sf2"])
    y = br.mix_stems(stems, choices, sr)
    assert y.shape == (3 * sr,) and y.dtype == np.float32 and np.all(np.isfinite(y))
    assert np.max(np.abs(y)) <= 10 ** (choices["limiter_db"] / 20) + 0.05


HAVE_FLUIDSYNTH = shutil.which("fluidsynth") is not None and Path(bp.DEFAULT_SOUNDFONTS[0]).is_file()


@pytest.mark.skipif(not HAVE_FLUIDSYNTH, reason="fluidsynth or fluid-soundfont-gm absent "
                    "(apt-get install fluidsynth fluid-soundfont-gm)")
@pytest.mark.skipif(not (POP909 / "003" / "003.mid").is_file(),
                    reason="shared POP909 data not found at ../shared/data")
def test_render_real_song_in_band_mode_and_resume(tmp_path):
    sf = pytest.importorskip("soundfile")
    sid, status, reason = bp.render_song("003", POP909, STRUCTURE, tmp_path, mode="band")
    assert (sid, status) == ("003", "rendered"), reason
    ref = json.loads((tmp_path / "references" / "003.jams").read_text())
    record = ref["sandbox"][bp.SANDBOX_KEY]
    assert record["mode"] == "band" and set(record["band"]["programs"]) == set(br.BAND_PARTS)
    assert record["arrangement"]["grooves"] and "fills" in record["arrangement"]
    y, sr = sf.read(str(tmp_path / "audio" / "003.flac"))
    assert sr == 22050 and y.ndim == 1 and np.all(np.isfinite(y))
    assert abs(len(y) / sr - ref["file_metadata"]["duration"]) < 1e-3
    ends = [o["time"] + o["duration"] for a in ref["annotations"] for o in a["data"]]
    assert len(y) / sr >= max(ends) - 1e-3
    # Low band energy from bass and kick: a band render has much more below 150 Hz than the
    # piano mode's render of the same song.
    spec = np.abs(np.fft.rfft(y[: sr * 60]))
    freqs = np.fft.rfftfreq(sr * 60, 1 / sr)
    assert spec[(freqs > 30) & (freqs < 150)].sum() / spec.sum() > 0.03
    # Resuming skips it; the piano mode would render it anew (another record).
    assert bp.render_song("003", POP909, STRUCTURE, tmp_path, mode="band")[1] == "skipped"
    # So do decorrelated cues: same sound, other arrangement, recorded (then skipped in turn).
    build = dict(song_ids=["003"], n_jobs=1, mode="band", cues="decorrelated")
    summary = bp.build_pop909_corpus(POP909, STRUCTURE, tmp_path, **build)
    assert summary["rendered"] == ["003"], summary["failed"]
    stored = json.loads((tmp_path / "references" / "003.jams").read_text())
    decor = stored["sandbox"][bp.SANDBOX_KEY]
    assert decor["cues"] == "decorrelated" and decor["band"] == record["band"]
    plan = decor["arrangement"]
    assert plan["cues"] == "decorrelated" and len(plan["bar_grooves"]) == len(plan["bar_bass"])
    assert bp.build_pop909_corpus(POP909, STRUCTURE, tmp_path, **build)["skipped"] == ["003"]
