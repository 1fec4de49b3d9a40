"""Tests of the POP909 renderer (piano mode) and the committed POP909 splits."""

from __future__ import annotations

import json
import re
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest

mido = pytest.importorskip("mido", reason="mido is needed to write and rewrite MIDI files")
sf = pytest.importorskip("soundfile")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
POP909 = DATA / "pop909"
STRUCTURE = DATA / "pop909_structure"
SPLITS = ROOT / "training" / "splits"


from msaf_learned_ssm_training import build_pop909 as bp  # noqa: E402
from msaf_learned_ssm_training import make_splits as ms  # noqa: E402

HAVE_FLUIDSYNTH = shutil.which("fluidsynth") is not None
HAVE_SOUNDFONT = Path(bp.DEFAULT_SOUNDFONTS[0]).is_file()
needs_fluidsynth = pytest.mark.skipif(
    not (HAVE_FLUIDSYNTH and HAVE_SOUNDFONT),
    reason="fluidsynth binary or FluidR3 GM soundfont absent "
           "(apt-get install fluidsynth fluid-soundfont-gm)",
)


# ------------------------------------------------------------------ choices


def test_choose_rendering_is_deterministic():
    fonts = ["FluidR3_GM.sf2", "TimGM6mb.sf2"]
    a = bp.choose_rendering("042", seed=3, soundfonts=fonts)
    b = bp.choose_rendering("042", seed=3, soundfonts=list(fonts))
    assert a == b
    # Independent of what was drawn before (order / parallelism independence).
    bp.choose_rendering("043", seed=3, soundfonts=fonts)
    assert bp.choose_rendering("042", seed=3, soundfonts=fonts) == a
    # JSON round trip is exact, which resuming relies on.
    assert json.loads(json.dumps(a)) == a


def test_choose_rendering_varies_and_stays_in_range():
    fonts = ["FluidR3_GM.sf2", "TimGM6mb.sf2"]
    ids = [f"{i:03d}" for i in range(1, 101)]
    choices = [bp.choose_rendering(i, seed=0, soundfonts=fonts) for i in ids]
    for role in ("melody", "bridge", "piano"):
        progs = [c["programs"][role] for c in choices]
        assert set(progs) <= set(bp.PROGRAM_POOLS[role])
        assert len(set(progs)) >= min(5, len(bp.PROGRAM_POOLS[role]))
    gains = [c["gain_db"] for c in choices]
    assert min(gains) >= bp.GAIN_DB_RANGE[0] and max(gains) <= bp.GAIN_DB_RANGE[1]
    assert len(set(gains)) > 20
    assert {c["soundfont"] for c in choices} == set(fonts)
    for c in choices:
        assert 0.0 <= c["reverb"]["room_size"] <= 1.0 and 0.0 <= c["reverb"]["level"] <= 1.0
    # Another global seed gives another corpus.
    other = [bp.choose_rendering(i, seed=1, soundfonts=fonts) for i in ids]
    assert other != choices


def test_adding_a_soundfont_changes_only_the_soundfont():
    one = bp.choose_rendering("007", 0, ["FluidR3_GM.sf2"])
    two = bp.choose_rendering("007", 0, ["FluidR3_GM.sf2", "TimGM6mb.sf2"])
    assert one["soundfont"] == "FluidR3_GM.sf2"
    one.pop("soundfont"), two.pop("soundfont")
    assert one == two


# ------------------------------------------------------------------ audio helpers


def test_gain_mono_and_peak_safe():
    y = np.stack([np.full(100, 0.5, np.float32), np.zeros(100, np.float32)], axis=1)
    m = bp.to_mono(y)
    assert m.shape == (100,) and np.allclose(m, 0.25)
    assert np.allclose(bp.apply_gain(m, -6.0206), 0.125, atol=1e-4)
    loud, scale = bp.peak_safe(np.array([0.0, 2.0, -1.0], np.float32))
    assert np.isclose(np.abs(loud).max(), bp.PEAK_LIMIT) and np.isclose(scale, bp.PEAK_LIMIT / 2)
    quiet, scale = bp.peak_safe(np.array([0.1, -0.2], np.float32))
    assert scale == 1.0 and np.allclose(quiet, [0.1, -0.2])


def test_trim_trailing_silence_keeps_margin_and_min_duration():
    sr = 100
    y = np.concatenate([np.ones(300, np.float32), np.full(200, 1e-5, np.float32),
                        np.zeros(500, np.float32)])
    assert bp.trim_trailing_silence(y, sr, margin=0.5).shape == (350,)
    # Never shorter than min_duration (the MIDI length), never longer than the input.
    assert bp.trim_trailing_silence(y, sr, min_duration=6.0, margin=0.5).shape == (600,)
    assert bp.trim_trailing_silence(y, sr, min_duration=60.0).shape == (1000,)


def test_missing_fluidsynth_or_soundfont_raises_with_instructions():
    with pytest.raises(RuntimeError, match="apt-get install fluidsynth fluid-soundfont-gm"):
        bp.find_fluidsynth("no-such-fluidsynth-binary-xyz")
    with pytest.raises(RuntimeError, match="apt-get install fluidsynth fluid-soundfont-gm"):
        bp.find_soundfonts(["/no/such/soundfont.sf2"])


# ------------------------------------------------------------------ MIDI


def _tiny_midi(path: Path, seconds_per_note: float = 0.5) -> None:
    """Three tracks (MELODY ch 0, BRIDGE ch 1, PIANO ch 2), each with a program change."""
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    meta = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000, time=0)])
    mid.tracks.append(meta)
    for ch, (name, note) in enumerate([("MELODY", 72), ("BRIDGE", 64), ("PIANO", 48)]):
        tr = mido.MidiTrack([mido.MetaMessage("track_name", name=name, time=0),
                             mido.Message("program_change", channel=ch, program=0, time=0)])
        for k in range(4):
            tr.append(mido.Message("note_on", channel=ch, note=note + k, velocity=90, time=0))
            tr.append(mido.Message("note_off", channel=ch, note=note + k, velocity=0,
                                   time=int(480 * seconds_per_note / 0.5)))
        # A stray mid-track change that must not survive the rewrite.
        tr.insert(4, mido.Message("program_change", channel=ch, program=99, time=0))
        mid.tracks.append(tr)
    mid.save(str(path))


def test_assign_programs_sets_every_channel(tmp_path):
    _tiny_midi(tmp_path / "t.mid")
    src = mido.MidiFile(str(tmp_path / "t.mid"))
    out = bp.assign_programs(src, {"melody": 73, "bridge": 48, "piano": 4})
    want = {"MELODY": 73, "BRIDGE": 48, "PIANO": 4}
    for tr in out.tracks[1:]:
        pcs = [m for m in tr if m.type == "program_change"]
        assert [(m.program, m.time) for m in pcs] == [(want[tr.name], 0)]
    # Timing is unchanged: removing messages hands their delta time on.
    assert np.isclose(out.length, src.length)
    # The source object is not modified.
    assert any(m.type == "program_change" and m.program == 99 for m in src.tracks[1])


# ------------------------------------------------------------------ rendering


@needs_fluidsynth
def test_render_tiny_midi(tmp_path):
    _tiny_midi(tmp_path / "t.mid")
    wav = tmp_path / "t.wav"
    bp.render_midi(tmp_path / "t.mid", bp.DEFAULT_SOUNDFONTS[0], wav, 22050,
                   reverb={"room_size": 0.3, "level": 0.5})
    y, sr = sf.read(str(wav), always_2d=True)
    assert sr == 22050
    assert y.shape[0] / sr >= 2.0  # four half-second notes
    assert np.abs(y).max() > 1e-3  # not silent


def _fake_adapter(monkeypatch):
    """Install a stand-in ``msaf_learned_ssm_jams.pop909`` (the real one is tested on its own)."""
    jams = pytest.importorskip("jams")

    def pop909_song_to_jams(song_id, pop909_dir, structure_dir):
        jam = jams.JAMS()
        ann = jams.Annotation(namespace="segment_open")
        ann.append(time=0.0, duration=1.0, value="A")
        ann.append(time=1.0, duration=4.0, value="B")  # ends after the music (2 s)
        jam.annotations.append(ann)
        jam.file_metadata.title = song_id
        return jam

    from msaf_learned_ssm_jams.pop909 import pop909_song_ids

    module = types.ModuleType("msaf_learned_ssm_jams.pop909")
    module.pop909_song_to_jams = pop909_song_to_jams
    module.pop909_song_ids = pop909_song_ids
    monkeypatch.setitem(sys.modules, "msaf_learned_ssm_jams.pop909", module)


@needs_fluidsynth
def test_build_tiny_corpus_and_resume(tmp_path, monkeypatch):
    _fake_adapter(monkeypatch)
    pop, struct, out = tmp_path / "pop909", tmp_path / "structure", tmp_path / "corpus"
    (pop / "999").mkdir(parents=True)
    (struct / "999").mkdir(parents=True)
    _tiny_midi(pop / "999" / "999.mid")

    summary = bp.build_pop909_corpus(pop, struct, out, seed=5, n_jobs=1)
    assert summary["rendered"] == ["999"] and not summary["failed"]
    info = sf.info(str(out / "audio" / "999.flac"))
    assert (info.channels, info.samplerate) == (1, 22050)
    assert (info.format, info.subtype) == ("FLAC", "PCM_16")
    stored = json.loads((out / "references" / "999.jams").read_text())
    record = stored["sandbox"][bp.SANDBOX_KEY]
    expected = bp.choose_rendering("999", 5, bp.find_soundfonts())
    assert record["programs"] == expected["programs"] and record["gain_db"] == expected["gain_db"]
    assert record["seed"] == 5 and record["fluidsynth_version"]
    assert np.isclose(stored["file_metadata"]["duration"], info.frames / info.samplerate)
    assert not list(out.rglob(".*tmp*"))  # no temp files left behind
    # The fake reference ends at 5 s, after the music: the audio is padded to cover it.
    assert info.frames / info.samplerate >= 5.0

    again = bp.build_pop909_corpus(pop, struct, out, seed=5, n_jobs=1)
    assert again["skipped"] == ["999"] and not again["rendered"]
    audio_mtime = (out / "audio" / "999.flac").stat().st_mtime_ns
    refreshed = bp.build_pop909_corpus(pop, struct, out, seed=5, n_jobs=1, refresh_references=True)
    assert refreshed["refreshed"] == ["999"]
    assert (out / "audio" / "999.flac").stat().st_mtime_ns == audio_mtime
    stored = json.loads((out / "references" / "999.jams").read_text())
    assert stored["sandbox"][bp.SANDBOX_KEY] == record
    # Another seed means other choices: the song is rendered again, not skipped.
    other = bp.build_pop909_corpus(pop, struct, out, seed=6, n_jobs=1)
    assert other["rendered"] == ["999"]


@needs_fluidsynth
def test_failures_are_reported_not_dropped(tmp_path, monkeypatch):
    _fake_adapter(monkeypatch)
    pop, struct = tmp_path / "pop909", tmp_path / "structure"
    (pop / "998").mkdir(parents=True)
    (pop / "998" / "998.mid").write_bytes(b"not a midi file")
    summary = bp.build_pop909_corpus(pop, struct, tmp_path / "out", song_ids=["998"], n_jobs=1)
    assert list(summary["failed"]) == ["998"] and summary["failed"]["998"]


@needs_fluidsynth
@pytest.mark.skipif(not (POP909 / "001" / "001.mid").is_file() or not STRUCTURE.is_dir(),
                    reason="shared POP909 data not found at ../shared/data")
def test_render_real_song(tmp_path):
    pytest.importorskip("msaf_learned_ssm_jams.pop909", reason="msaf_learned_ssm_jams.pop909 not available")
    sid, status, reason = bp.render_song("001", POP909, STRUCTURE, tmp_path, seed=0)
    assert status == "rendered", reason
    y, sr = sf.read(str(tmp_path / "audio" / "001.flac"))
    assert sr == 22050 and y.ndim == 1
    midi_len = mido.MidiFile(str(POP909 / "001" / "001.mid")).length
    # FluidSynth adds the release/reverb tail after the last note.
    assert midi_len <= len(y) / sr <= midi_len + 10
    assert 1e-3 < np.sqrt(np.mean(y ** 2)) and np.abs(y).max() <= bp.PEAK_LIMIT + 1e-3
    stored = json.loads((tmp_path / "references" / "001.jams").read_text())
    assert np.isclose(stored["file_metadata"]["duration"], len(y) / sr)
    assert stored["sandbox"][bp.SANDBOX_KEY]["song_id"] == "001"


# ------------------------------------------------------------------ splits


def test_split_files_are_a_partition():
    splits = ms.read_splits(SPLITS)
    sets = {k: set(v) for k, v in splits.items()}
    assert len(sets["train"]) == 655 and len(sets["val"]) == 82 and len(sets["test"]) == 82
    for k, v in splits.items():
        assert v == sorted(v) and len(v) == len(sets[k]), f"{k}.txt not sorted or has duplicates"
        assert all(re.fullmatch(r"\d{3}", i) for i in v)
    assert not sets["train"] & sets["val"]
    assert not sets["train"] & sets["test"]
    assert not sets["val"] & sets["test"]
    union = sets["train"] | sets["val"] | sets["test"]
    assert len(union) == 819
    # Reproducible from the committed ids alone.
    assert ms.split_ids(sorted(union)) == splits


@pytest.mark.skipif(not POP909.is_dir() or not STRUCTURE.is_dir(),
                    reason="shared POP909 data not found at ../shared/data")
def test_split_files_cover_the_available_songs():
    splits = ms.read_splits(SPLITS)
    union = set(splits["train"]) | set(splits["val"]) | set(splits["test"])
    assert union == set(ms.available_song_ids(POP909, STRUCTURE))


@needs_fluidsynth
def test_parallel_build_matches_serial_choices(tmp_path, monkeypatch):
    _fake_adapter(monkeypatch)
    pop, struct = tmp_path / "pop909", tmp_path / "structure"
    for sid in ("901", "902", "903"):
        (pop / sid).mkdir(parents=True)
        (struct / sid).mkdir(parents=True)
        _tiny_midi(pop / sid / f"{sid}.mid", seconds_per_note=0.25)
    summary = bp.build_pop909_corpus(pop, struct, tmp_path / "out", seed=2, n_jobs=2)
    assert summary["rendered"] == ["901", "902", "903"] and not summary["failed"]
    fonts = bp.find_soundfonts()
    for sid in ("901", "902", "903"):
        stored = json.loads((tmp_path / "out" / "references" / f"{sid}.jams").read_text())
        expected = bp.choose_rendering(sid, 2, fonts)["programs"]
        assert stored["sandbox"][bp.SANDBOX_KEY]["programs"] == expected
