"""Tests of msaf_learned_ssm_jams.segments / io / text converters on files the tests make."""

from __future__ import annotations

import json
import os

import jams
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msaf_learned_ssm_jams import (
    csv_to_jams,
    harmonix_to_jams,
    lab_to_jams,
    list_segment_annotations,
    read_segments,
    salami_txt_to_jams,
    save_jams_atomic,
    segments_to_jams,
    validate_segments,
    write_estimation_jams,
)
from msaf_learned_ssm_jams.io import AnnotationExistsError
from msaf_learned_ssm.errors import AnnotationError

IV = np.array([[0.0, 10.0], [10.0, 25.5], [25.5, 40.0]])
LABELS = ["intro", "verse", "chorus"]


def _raw_jams(segments, duration=60.0, namespace="segment_open"):
    """A JAMS dict written by hand, so tests control the file order of observations."""
    return {
        "file_metadata": {"duration": duration},
        "annotations": [
            {
                "namespace": namespace,
                "data": [
                    {"time": s, "duration": e - s, "value": lab, "confidence": None}
                    for s, e, lab in segments
                ],
                "annotation_metadata": {},
                "sandbox": {},
            }
        ],
        "sandbox": {},
    }


def _write(tmp_path, name, obj):
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


# ------------------------------------------------------------------ round trips


def test_round_trip(tmp_path):
    jam = segments_to_jams(IV, LABELS, 60.0, annotator="alice")
    path = save_jams_atomic(jam, tmp_path / "t.jams")
    iv, labels = read_segments(path)
    np.testing.assert_allclose(iv, IV, atol=1e-9)
    assert labels == LABELS
    assert jams.load(str(path)).file_metadata.duration == 60.0


def test_read_from_jams_object():
    iv, labels = read_segments(segments_to_jams(IV, LABELS, 60.0))
    np.testing.assert_allclose(iv, IV)
    assert labels == LABELS


def test_snaps_small_gaps_and_clips_duration(tmp_path):
    segs = [(0.0, 10.0004, "a"), (10.0, 20.0, "b"), (20.0005, 60.3, "c")]
    iv, _ = read_segments(_write(tmp_path, "s.jams", _raw_jams(segs, duration=60.0)))
    assert iv[0, 1] == 10.0 and iv[1, 1] == 20.0005 and iv[2, 1] == 60.0


def test_large_gap_kept():
    validate_segments([[0, 1], [5, 6]], ["a", "b"], 10.0)
    with pytest.raises(AnnotationError, match="gap"):
        validate_segments([[0, 1], [5, 6]], ["a", "b"], 10.0, allow_gaps=False)


# ------------------------------------------------------------------ bad inputs


BAD_SEGMENTS = {
    "unsorted": ([(10.0, 20.0, "b"), (0.0, 10.0, "a")], "not sorted"),
    "overlap": ([(0.0, 12.0, "a"), (10.0, 20.0, "b")], "overlaps"),
    "negative": ([(-1.0, 10.0, "a"), (10.0, 20.0, "b")], "before 0|less than the minimum"),
    "beyond": ([(0.0, 10.0, "a"), (10.0, 75.0, "b")], "after the end of the audio"),
    "empty_label": ([(0.0, 10.0, "a"), (10.0, 20.0, "  ")], "empty"),
    "zero_length": ([(0.0, 10.0, "a"), (10.0, 10.0, "b")], "at or before its start|not sorted|overlap"),
}


@pytest.mark.parametrize("case", sorted(BAD_SEGMENTS))
def test_bad_segments_name_the_file(tmp_path, case):
    segs, pattern = BAD_SEGMENTS[case]
    path = _write(tmp_path, f"bad_{case}.jams", _raw_jams(segs))
    with pytest.raises(AnnotationError, match=pattern) as info:
        read_segments(path)
    assert f"bad_{case}.jams" in str(info.value)


@pytest.mark.parametrize(
    "name, content, pattern",
    [
        ("notjson.jams", "this is { not json", "not a JSON"),
        ("list.jams", "[1, 2, 3]", "not JAMS"),
        ("foo.jams", '{"foo": 1}', "not valid JAMS"),
        ("nodur.jams", '{"annotations": [], "file_metadata": {}, "sandbox": {}}', "not valid JAMS"),
        ("badns.jams", json.dumps({**_raw_jams([(0, 1, "a")]), "annotations": [{"namespace": "nope", "data": []}]}), "not valid JAMS"),
    ],
)
def test_bad_files_name_the_file(tmp_path, name, content, pattern):
    path = _write(tmp_path, name, content)
    with pytest.raises(AnnotationError, match=pattern) as info:
        read_segments(path)
    assert name in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(AnnotationError, match="not found") as info:
        read_segments(tmp_path / "missing.jams")
    assert "missing.jams" in str(info.value)


def test_no_segment_annotation_lists_namespaces(tmp_path):
    jam = jams.JAMS()
    jam.file_metadata.duration = 10.0
    ann = jams.Annotation("beat")
    ann.append(time=1.0, duration=0.0, value=1)
    jam.annotations.append(ann)
    path = tmp_path / "beats_only.jams"
    jam.save(str(path))
    with pytest.raises(AnnotationError, match="no segment annotation.*beat") as info:
        read_segments(path)
    assert "beats_only.jams" in str(info.value)


@pytest.mark.parametrize(
    "iv, labels, pattern",
    [
        (np.zeros((0, 2)), [], "no segments"),
        ([[0, 1]], ["a", "b"], "1 intervals but 2 labels"),
        ([[0, np.nan]], ["a"], "non-finite"),
        ([[0, 1], [1, 2]], ["a", 3], "not a string"),
    ],
)
def test_validate_misc(iv, labels, pattern):
    with pytest.raises(AnnotationError, match=pattern) as info:
        validate_segments(iv, labels, 10.0, source="my_file.jams")
    assert "my_file.jams" in str(info.value)


def test_starts_after_duration():
    with pytest.raises(AnnotationError, match="starts at or after"):
        validate_segments([[0, 10], [10.2, 10.3]], ["a", "b"], duration=10.1)


# ------------------------------------------------------------------ selection


def _multi(tmp_path):
    jam = segments_to_jams(IV, LABELS, 60.0, annotator="alice")
    segments_to_jams(IV[:2], ["x", "y"], 60.0, annotator="bob", jam=jam)
    segments_to_jams([[0, 40]], ["A"], 60.0, namespace="segment_salami_upper", jam=jam)
    hier = jams.Annotation("multi_segment")
    hier.append(time=0.0, duration=40.0, value={"label": "A", "level": 0})
    hier.append(time=0.0, duration=25.5, value={"label": "a", "level": 1})
    hier.append(time=25.5, duration=14.5, value={"label": "b", "level": 1})
    jam.annotations.append(hier)
    return save_jams_atomic(jam, tmp_path / "multi.jams")


def test_annotator_selection(tmp_path):
    path = _multi(tmp_path)
    assert read_segments(path)[1] == LABELS  # segment_open first, first annotation
    assert read_segments(path, annotator="bob")[1] == ["x", "y"]
    assert read_segments(path, annotator=1)[1] == ["x", "y"]
    assert read_segments(path, namespace="segment_salami_upper")[1] == ["A"]
    with pytest.raises(AnnotationError, match="carol.*alice"):
        read_segments(path, annotator="carol")
    listing = list_segment_annotations(path)
    assert [(d["namespace"], d["annotator"], d["index"]) for d in listing] == [
        ("segment_open", "alice", 0), ("segment_open", "bob", 1),
        ("segment_salami_upper", None, 0), ("multi_segment", None, 0),
    ]
    assert listing[-1]["levels"] == [0, 1]


def test_level_selection(tmp_path):
    path = _multi(tmp_path)
    assert read_segments(path, namespace="multi_segment")[1] == ["A"]
    iv, labels = read_segments(path, level=1)
    assert labels == ["a", "b"]
    np.testing.assert_allclose(iv, [[0, 25.5], [25.5, 40]])
    with pytest.raises(AnnotationError, match="no level 2"):
        read_segments(path, level=2)
    with pytest.raises(ValueError):
        read_segments(path, namespace="segment_open", level=1)


def test_priority_order(tmp_path):
    jam = segments_to_jams([[0, 40]], ["silence"], 60.0, namespace="segment_salami_function")
    segments_to_jams([[0, 40]], ["A"], 60.0, namespace="segment_salami_upper", jam=jam)
    assert read_segments(jam)[1] == ["A"]


# ------------------------------------------------------------------ atomic writes


def test_save_refuses_overwrite(tmp_path):
    jam = segments_to_jams(IV, LABELS, 60.0)
    path = save_jams_atomic(jam, tmp_path / "a.jams")
    before = path.read_bytes()
    with pytest.raises(AnnotationExistsError, match="exists") as info:
        save_jams_atomic(segments_to_jams(IV[:1], ["z"], 60.0), path)
    assert isinstance(info.value, FileExistsError) and isinstance(info.value, AnnotationError)
    assert path.read_bytes() == before
    save_jams_atomic(segments_to_jams(IV[:1], ["z"], 60.0), path, overwrite=True)
    assert read_segments(path)[1] == ["z"]
    assert [p.name for p in tmp_path.iterdir()] == ["a.jams"]  # no temp files left


def test_reference_never_overwritten(tmp_path):
    ref_dir = tmp_path / "references"
    ref_dir.mkdir()
    path = save_jams_atomic(segments_to_jams(IV, LABELS, 60.0), ref_dir / "song.jams")
    before = path.read_bytes()
    with pytest.raises(AnnotationError, match="reference"):
        save_jams_atomic(segments_to_jams(IV[:1], ["z"], 60.0), path, overwrite=True)
    with pytest.raises(AnnotationError, match="references"):
        write_estimation_jams(path, [10.0], duration=60.0)
    assert path.read_bytes() == before


def test_invalid_jams_not_written(tmp_path):
    with pytest.raises(AnnotationError, match="invalid"):
        save_jams_atomic(jams.JAMS(), tmp_path / "x.jams")  # no duration
    assert not (tmp_path / "x.jams").exists()


# ------------------------------------------------------------------ estimations


def test_write_estimation_msaf_layout(tmp_path):
    path = tmp_path / "estimations" / "song.jams"
    path.parent.mkdir()
    write_estimation_jams(path, [10.0, 25.5], labels=[0, 1, 0], duration=60.0,
                          config={"feature": "mel", "hier": False})
    jam = jams.load(str(path))
    (ann,) = jam.annotations
    assert ann.namespace == "segment_open"
    assert ann.sandbox.boundaries_id == "learned_ssm" and ann.sandbox.feature == "mel"
    assert ann.annotation_metadata.data_source == "MSAF"
    iv, labels = read_segments(path)
    np.testing.assert_allclose(iv, [[0, 10], [10, 25.5], [25.5, 60]])
    assert labels == ["A", "B", "A"]
    # Same algorithm and config: replaced. Another config: appended.
    write_estimation_jams(path, [12.0], duration=60.0, config={"feature": "mel", "hier": False})
    write_estimation_jams(path, [30.0], duration=60.0, config={"feature": "cqt", "hier": False})
    jam = jams.load(str(path))
    assert len(jam.annotations) == 2
    assert [a.sandbox.feature for a in jam.annotations] == ["mel", "cqt"]
    assert read_segments(path)[1] == ["@", "@"]


def test_write_estimation_bad_inputs(tmp_path):
    with pytest.raises(AnnotationError, match="increasing"):
        write_estimation_jams(tmp_path / "e.jams", [20.0, 10.0], duration=60.0)
    with pytest.raises(AnnotationError, match=r"\[0, 60\]"):
        write_estimation_jams(tmp_path / "e.jams", [70.0], duration=60.0)
    (tmp_path / "broken.jams").write_text("nope")
    with pytest.raises(AnnotationError, match="cannot be loaded"):
        write_estimation_jams(tmp_path / "broken.jams", [10.0], duration=60.0)
    assert (tmp_path / "broken.jams").read_text() == "nope"


# ------------------------------------------------------------------ text converters


def test_harmonix_variations(tmp_path):
    p = tmp_path / "h.txt"
    p.write_text("1.5 intro\n10.0 verse\n20.0 end\n25.0 end\n")
    jam = harmonix_to_jams(p, duration=30.0)
    iv, labels = read_segments(jam)
    np.testing.assert_allclose(iv, [[1.5, 10], [10, 20]])
    assert labels == ["intro", "verse"]
    assert "dropped" in jam.annotations[0].sandbox.conversion_notes[0]
    with pytest.raises(AnnotationError, match="strict"):
        harmonix_to_jams(p, duration=30.0, strict=True)
    p.write_text("0 intro\n10.0 verse\n")
    with pytest.raises(AnnotationError, match="no 'end' line") as info:
        harmonix_to_jams(p)
    assert "h.txt" in str(info.value)
    assert read_segments(harmonix_to_jams(p, duration=30.0))[0][-1, 1] == 30.0
    p.write_text("0 intro\nten verse\n20 end\n")
    with pytest.raises(AnnotationError, match=r"h.txt:2"):
        harmonix_to_jams(p)
    p.write_text("0 intro\n12 verse\n10 chorus\n20 end\n")
    with pytest.raises(AnnotationError, match=r"h.txt:3.*before"):
        harmonix_to_jams(p)


def test_salami(tmp_path):
    p = tmp_path / "textfile1_uppercase.txt"
    p.write_text("\ufeff0.0\tSilence\r\n0.5\tA\r\n20.1\tB\r\n40.0\tSilence\r\n41.0\tEnd\r\n")
    jam = salami_txt_to_jams(p)
    assert jam.annotations[0].namespace == "segment_salami_upper"
    assert read_segments(jam)[1] == ["Silence", "A", "B", "Silence"]
    f = tmp_path / "textfile1_functions.txt"
    f.write_text("0.0\tSilence\n0.5\tVerse\n20\tend\n")
    assert read_segments(salami_txt_to_jams(f))[1] == ["silence", "verse"]


def test_lab_and_csv(tmp_path):
    lab = tmp_path / "a.lab"
    lab.write_text("# comment\n0.0 10.0 verse one\n10.0\t20.0\tchorus\n")
    iv, labels = read_segments(lab_to_jams(lab))
    np.testing.assert_allclose(iv, [[0, 10], [10, 20]])
    assert labels == ["verse one", "chorus"]
    csvp = tmp_path / "a.csv"
    csvp.write_text('start,end,label\n0,10,"verse, part 1"\n10,20,chorus\n')
    assert read_segments(csv_to_jams(csvp, duration=25.0))[1] == ["verse, part 1", "chorus"]
    lab.write_text("0 10 a\n5 20 b\n")
    with pytest.raises(AnnotationError, match="a.lab.*overlaps"):
        lab_to_jams(lab)
    lab.write_text("0 10\n")
    with pytest.raises(AnnotationError, match="a.lab:1"):
        lab_to_jams(lab)


# ------------------------------------------------------------------ property


@st.composite
def segmentations(draw):
    n = draw(st.integers(1, 20))
    # Boundaries on a 1 ms grid at least 10 ms apart: gaps are 0 or >= SNAP_TOL, so
    # snapping must leave them untouched.
    steps = draw(st.lists(st.integers(10, 100_000), min_size=n, max_size=n))
    gaps = draw(st.lists(st.sampled_from([0, 0, 0, 5, 1234]), min_size=n, max_size=n))
    start = draw(st.sampled_from([0, 0, 2, 1500]))
    iv, t = [], start
    for step, gap in zip(steps, gaps):
        t += gap
        iv.append([t / 1000, (t + step) / 1000])
        t += step
    labels = draw(st.lists(
        st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8)
        .filter(lambda s: s.strip()), min_size=n, max_size=n))
    duration = iv[-1][1] + draw(st.sampled_from([0.0, 0.25, 30.0]))
    return np.array(iv), labels, duration


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(segmentations())
def test_round_trip_property(tmp_path, seg):
    iv, labels, duration = seg
    path = tmp_path / "prop.jams"
    save_jams_atomic(segments_to_jams(iv, labels, duration), path, overwrite=True)
    iv2, labels2 = read_segments(path)
    np.testing.assert_allclose(iv2, iv, atol=1e-6, rtol=0)
    assert labels2 == labels
    os.remove(path)


def test_validate_negative():
    with pytest.raises(AnnotationError, match="segment 0.*before 0 s"):
        validate_segments([[-0.5, 1.0]], ["a"], source="neg.jams")


def test_write_estimation_numpy_config(tmp_path):
    path = write_estimation_jams(tmp_path / "n.jams", np.array([0.0, 10.0, 60.0]), ["a", "b"],
                                 duration=60.0, config={"thr": np.float32(1.5), "k": np.int64(3)})
    ann = jams.load(str(path)).annotations[0]
    assert ann.sandbox.thr == 1.5 and ann.sandbox.k == 3
