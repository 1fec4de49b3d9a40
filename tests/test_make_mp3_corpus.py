"""bench/make_mp3_corpus.py: three-minute-MP3 stand-ins of the held-out recordings, with
references trimmed to the audio."""

from __future__ import annotations

import jams
import pytest
import soundfile as sf

from conftest import load_bench
from msaf_learned_ssm.examples import write_synthetic_corpus


def test_writes_cut_mp3s_and_trimmed_references_and_leaves_the_sources(tmp_path):
    bench = load_bench("make_mp3_corpus")
    source = write_synthetic_corpus(tmp_path / "renders", n_tracks=2, section_sec=4.0)
    before = {p: p.read_bytes() for p in (source / "references").iterdir()}
    out = tmp_path / "mp3"
    assert bench.main(["--from", str(source), "--n", "2", "--seconds", "10",
                       "--out", str(out)]) == 0
    for track in ("t0", "t1"):
        info = sf.info(str(out / "audio" / f"{track}.mp3"))
        assert (info.samplerate, info.channels) == (44100, 2)
        assert 9.5 <= info.duration <= 10.5  # the MP3 encoder pads a little
        jam = jams.load(str(out / "references" / f"{track}.jams"))
        assert jam.file_metadata.duration == 10.0
        segments = jam.search(namespace="segment_open")[0].data
        assert segments and max(o.time + o.duration for o in segments) <= 10.0 + 1e-6
    assert {p: p.read_bytes() for p in (source / "references").iterdir()} == before
    with pytest.raises(SystemExit):  # more tracks asked for than the sources have
        bench.main(["--from", str(source), "--n", "3", "--out", str(tmp_path / "x")])
