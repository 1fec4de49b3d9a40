"""Band arrangements with decorrelated section cues (issue 22, 4d): the labelled default is
unchanged, the decorrelated cues carry no information about the structure, and the choice is
part of the rendering record."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mido", reason="mido (the [train] extra) writes the MIDI stems")
sf = pytest.importorskip("soundfile")

from msaf_learned_ssm_training import arrangement as arr  # noqa: E402
from msaf_learned_ssm_training import build_pop909 as bp  # noqa: E402
from test_band_render import _grid  # noqa: E402  (a regular bar grid of phrases)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
POP909, STRUCTURE = DATA / "pop909", DATA / "pop909_structure"
FONTS = ["FluidR3_GM.sf2", "TimGM6mb.sf2"]


def _plan(grid, seed, **kwargs):
    return arr.plan_arrangement(grid["bar_labels"], grid["phrase_start"], grid["phrase_end"],
                                grid["beats_per_bar"], np.random.default_rng(seed), **kwargs)


def _digest(x) -> str:
    return hashlib.sha256(json.dumps(x, sort_keys=True).encode()).hexdigest()[:16]


# ------------------------------------------------------------------ the labelled default

# Recorded with the code before cues existed (plan, drum notes and bass notes of each grid and
# seed, as JSON digests, and a few fields in the clear): existing renders must not change.
_SPECS = [([("i", 4), ("A", 8), ("B", 8), ("A", 8), ("o", 4)], 4),
          ([("", 1), ("A", 4), ("A", 4), ("B", 6), ("X", 2), ("B", 8)], 4),
          ([("A", 8), ("B", 8), ("A", 8)], 3)]
_BEFORE = {
    (0, 0): ("b6f92304592cb5ba", "3a5e670a7aa70e44", "cccacdaf15c34744", [3, 15, 19], [0, 4, 28]),
    (0, 7): ("d38393aac58daa78", "94de058cfad2bfa5", "a6475051743ce138", [7, 8, 15, 19, 20],
             [0, 4, 12, 28]),
    (1, 0): ("ae4f5851761fc675", "23870684c7071e51", "76f2a9f3bb6d77ae", [0, 1, 6, 16],
             [9, 15, 17]),
    (1, 7): ("3a28e5ecd1237371", "09dbaa423707533f", "ddb947d2f34346dd", [0, 9, 16, 20],
             [0, 1, 9, 15]),
    (2, 0): ("86af1fcf60937186", "85893b3b5762b18b", "ec744f739f273ff9", [5, 7, 13], [0, 8, 16]),
    (2, 7): ("dc1225253d1b9ad2", "5ad8e48e02ac4495", "bda4525eba75afbf", [7, 16], [0, 8, 16]),
}


@pytest.mark.parametrize("spec, seed", sorted(_BEFORE))
def test_labelled_cues_reproduce_the_plans_made_before_cues(spec, seed):
    phrases, bpb = _SPECS[spec]
    grid = _grid(phrases, bpb)
    plan = _plan(grid, seed)
    assert plan == _plan(grid, seed, cues="labelled")
    args = (grid["beat_times"], grid["bar_start_beats"], grid["bar_labels"], bpb)
    drums = arr.drum_notes(plan, *args, np.random.default_rng(seed))
    bass = arr.bass_notes(plan, *args, [(0.0, 1000.0, "C:maj")], np.random.default_rng(seed))
    got = (_digest(plan), _digest([list(map(float, n)) for n in drums]),
           _digest([list(map(float, n)) for n in bass]), plan["fills"], plan["crashes"])
    assert got == _BEFORE[spec, seed]


@pytest.mark.skipif(not (STRUCTURE / "003").is_dir(), reason="shared POP909 data not found")
def test_labelled_cues_reproduce_the_real_songs_plans():
    from msaf_learned_ssm_jams.pop909 import pop909_bar_grid
    from msaf_learned_ssm_training.band_render import band_rng

    before = {"003": "ad3f9c764ec7cdf9", "101": "347b3d848d52c120"}  # the code before cues
    for sid, digest in before.items():
        g = pop909_bar_grid(sid, POP909, STRUCTURE)
        plan = arr.plan_arrangement(g["bar_labels"], g["phrase_start"], g["phrase_end"],
                                    int(g["beats_per_bar"]), band_rng(sid, 0, 1))
        assert _digest(plan) == digest, sid


# ------------------------------------------------------------------ decorrelated rates


def test_rates_are_the_labelled_modes_average_per_bar():
    grid = _grid([("A", 4), ("B", 4)])
    rates = arr.decorrelated_rates(grid["bar_labels"], grid["phrase_start"], grid["phrase_end"])
    # Fills: bars 0-6 can take one; bar 3 ends a phrase (0.5), the six others 0.05 each.
    assert rates["fill"] == pytest.approx((0.5 + 6 * arr.FILL_P_OTHER_BAR) / 7, abs=1e-6)
    assert rates["crash"] == pytest.approx(2 * arr.CRASH_P_NEW_SECTION / 8, abs=1e-6)
    assert rates["change"] == 2 / 8 and rates["drumless"] == 0 and rates["bass_rest"] == 0
    edges = _grid([("", 2), ("i", 2), ("A", 4)])
    rates = arr.decorrelated_rates(edges["bar_labels"], edges["phrase_start"], edges["phrase_end"])
    assert rates["drumless"] == pytest.approx(arr.DRUMLESS_P_INTRO_OUTRO * 4 / 8)
    assert rates["bass_rest"] == pytest.approx((2 + arr.BASS_REST_P_INTRO_OUTRO * 2) / 8)


def test_decorrelated_plan_is_seeded_json_ready_and_per_bar():
    grid = _grid([("i", 4), ("A", 8), ("B", 8), ("A", 8), ("o", 4)], bpb=3)
    plan = _plan(grid, 3, cues="decorrelated")
    assert plan == _plan(grid, 3, cues="decorrelated") and json.loads(json.dumps(plan)) == plan
    assert plan["cues"] == "decorrelated" and plan["segment_starts"][0] == 0
    assert len(plan["bar_grooves"]) == len(plan["bar_bass"]) == 32
    assert all(g is None or g in arr.GROOVES[3] for g in plan["bar_grooves"])
    assert max(plan["fills"], default=0) < 31
    with pytest.raises(ValueError, match="cues"):
        _plan(grid, 3, cues="random")


def test_notes_follow_the_per_bar_choices():
    grid = _grid([("A", 4), ("B", 4)])
    plan = _plan(grid, 1, cues="decorrelated")
    plan.update(fills=[], crashes=[], bar_grooves=["rock"] * 4 + [None] * 4,
                bar_bass=[{"pattern": "whole", "octave": 1, "staccato": 0.9, "rest": r}
                          for r in [True] * 4 + [False] * 4])
    args = (grid["beat_times"], grid["bar_start_beats"], grid["bar_labels"], 4)
    drums = arr.drum_notes(plan, *args, np.random.default_rng(0))
    bass = arr.bass_notes(plan, *args, [(0.0, 16.0, "C:maj")], np.random.default_rng(0))
    assert drums and max(n.start for n in drums) < 8.0  # the first four bars (2 s each)
    assert [round(n.start, 3) for n in bass] == [8.0, 10.0, 12.0, 14.0]
    plan["bar_grooves"] = plan["bar_grooves"][:-1]
    with pytest.raises(ValueError, match="bar_grooves"):
        arr.drum_notes(plan, *args, np.random.default_rng(0))


def _random_song(rng):
    """Phrases of 2-8 bars (mostly 4 and 8) in a verse-chorus order, with an intro/outro."""
    body = list(rng.choice(["A", "B", "C"], size=int(rng.integers(4, 9))))
    labels = (["i"] if rng.uniform() < 0.7 else []) + body + (["o"] if rng.uniform() < 0.5 else [])
    lengths = rng.choice([2, 4, 4, 4, 6, 8, 8], size=len(labels))
    return _grid(list(zip(labels, (int(n) for n in lengths))))


def _z(hits_a, n_a, hits_b, n_b) -> float:
    """Two-proportion z statistic (pooled)."""
    p = (hits_a + hits_b) / (n_a + n_b)
    return (hits_a / n_a - hits_b / n_b) / np.sqrt(p * (1 - p) * (1 / n_a + 1 / n_b))


def _cue_counts(cues, n_songs=400):
    """Over simulated songs: fills at phrase-end / other bars, crashes and groove changes at
    phrase-start / other bars (bar 0 left out), and groove sharing of distant phrase pairs
    with the same / another label (each as [hits, n]); ``fill`` and ``crash``: [count, count
    expected from :func:`decorrelated_rates`]."""
    rng = np.random.default_rng(2024)
    c = {k: [0, 0] for k in ("fill_end", "fill_other", "crash_start", "crash_other",
                             "change_start", "change_other", "same_label", "other_label",
                             "fill", "crash")}
    for i in range(n_songs):
        g = _random_song(rng)
        plan = _plan(g, i, cues=cues)
        n = len(g["bar_labels"])
        grooves = plan.get("bar_grooves") or [plan["grooves"][lb] for lb in g["bar_labels"]]
        fills, crashes = set(plan["fills"]), set(plan["crashes"])
        rates = arr.decorrelated_rates(g["bar_labels"], g["phrase_start"], g["phrase_end"])
        c["fill"] = [c["fill"][0] + len(fills), c["fill"][1] + rates["fill"] * (n - 1)]
        c["crash"] = [c["crash"][0] + len(crashes), c["crash"][1] + rates["crash"] * n]
        for b in range(n):
            start, end = bool(g["phrase_start"][b]), bool(g["phrase_end"][b])
            if b + 1 < n:
                c["fill_end" if end else "fill_other"][0] += b in fills
                c["fill_end" if end else "fill_other"][1] += 1
            if b > 0:
                c["crash_start" if start else "crash_other"][0] += b in crashes
                c["crash_start" if start else "crash_other"][1] += 1
                c["change_start" if start else "change_other"][0] += grooves[b] != grooves[b - 1]
                c["change_start" if start else "change_other"][1] += 1
        starts = [b for b in range(n) if g["phrase_start"][b] and g["bar_labels"][b] in "ABC"]
        for j, a in enumerate(starts):
            for b in starts[j + 1:]:
                if b - a >= 16:  # far enough apart that a segment rarely spans both
                    same = g["bar_labels"][a] == g["bar_labels"][b]
                    key = "same_label" if same else "other_label"
                    c[key][0] += grooves[a] == grooves[b]
                    c[key][1] += 1
    return c


def test_decorrelated_cues_say_nothing_about_the_structure():
    c = _cue_counts("decorrelated")
    # Fills as likely at a phrase end as elsewhere; crashes and groove changes as likely at a
    # phrase start as elsewhere; same-label phrases share a groove no more than others.
    for a, b in (("fill_end", "fill_other"), ("crash_start", "crash_other"),
                 ("change_start", "change_other"), ("same_label", "other_label")):
        assert abs(_z(*c[a], *c[b])) < 3.5, (a, b, c[a], c[b])
    assert c["same_label"][0] / c["same_label"][1] < 0.25  # chance, not a shared groove
    # The labelled mode, through the same counts, gives each cue away (the test has power).
    lab = _cue_counts("labelled")
    for a, b in (("fill_end", "fill_other"), ("crash_start", "crash_other"),
                 ("change_start", "change_other"), ("same_label", "other_label")):
        assert _z(*lab[a], *lab[b]) > 8, (a, b, lab[a], lab[b])
    # Both modes place the expected number of fills and crashes (within 4 standard deviations):
    # the rates are the labelled mode's averages.
    for key in ("fill", "crash"):
        for counts in (c, lab):
            assert abs(counts[key][0] - counts[key][1]) < 4 * np.sqrt(counts[key][1]), counts[key]


# ------------------------------------------------------------------ the rendering record


def _fake_rendered(tmp_path, record):
    """A 'rendered' song: one second of FLAC and a JAMS holding ``record``."""
    audio, jams_path = tmp_path / "audio" / "003.flac", tmp_path / "references" / "003.jams"
    audio.parent.mkdir(parents=True, exist_ok=True)
    jams_path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(audio), np.zeros(22050, dtype=np.float32), 22050, format="FLAC")
    jams_path.write_text(json.dumps({"sandbox": {bp.SANDBOX_KEY: record},
                                     "file_metadata": {"duration": 1.0}}))
    return audio, jams_path


def _choices(cues):
    choices = bp.choose_song_rendering("003", 0, FONTS, "band", cues)
    choices["sample_rate"] = 22050
    return choices


def test_cues_are_recorded_and_a_change_of_cues_is_not_skipped(tmp_path):
    labelled, decor = _choices("labelled"), _choices("decorrelated")
    assert labelled["cues"] == "labelled" and decor["cues"] == "decorrelated"
    assert labelled["band"] == decor["band"]  # the same sound: only the arrangement differs
    files = _fake_rendered(tmp_path, labelled)
    assert bp.is_rendered(*files, labelled) and not bp.is_rendered(*files, decor)
    files = _fake_rendered(tmp_path, decor)
    assert bp.is_rendered(*files, decor) and not bp.is_rendered(*files, labelled)
    # Band renders recorded before cues existed were labelled: still skipped, not redone.
    old = {k: v for k, v in labelled.items() if k != "cues"}
    files = _fake_rendered(tmp_path, old)
    assert bp.is_rendered(*files, labelled) and not bp.is_rendered(*files, decor)


def test_decorrelated_cues_need_the_band_mode(tmp_path):
    with pytest.raises(ValueError, match="band"):
        bp.choose_song_rendering("003", 0, FONTS, "piano", "decorrelated")
    with pytest.raises(ValueError, match="band"):
        bp.build_pop909_corpus(tmp_path, tmp_path, tmp_path / "out", mode="piano",
                               cues="decorrelated")
    assert not (tmp_path / "out").exists()  # refused before any work
    assert "cues" not in bp.choose_song_rendering("003", 0, FONTS, "piano")
    from click.testing import CliRunner

    from msaf_learned_ssm_training.cli import build_pop909

    result = CliRunner().invoke(build_pop909, [str(tmp_path), str(tmp_path),
                                               str(tmp_path / "out"), "--mode", "piano",
                                               "--cues", "decorrelated"])
    assert result.exit_code == 2 and "--cues needs --mode band" in result.output
    assert not (tmp_path / "out").exists()
