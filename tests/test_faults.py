"""One kill-and-resume cycle of ``bench/faults.py``: training killed with SIGKILL after it
wrote a resume state, then resumed with ``--resume``, ends with exactly the weights of an
uninterrupted run (the full benchmark runs several kills: ``python bench/faults.py``)."""

from __future__ import annotations

import random

from conftest import load_bench


def _faults():
    return load_bench("faults")


def test_kill_and_resume_gives_identical_weights(tmp_path):
    faults = _faults()
    corpus, cache = faults.write_corpus(tmp_path / "corpus", n_tracks=4), tmp_path / "cache"
    (tmp_path / "ref").mkdir()
    done = faults.run_to_completion(corpus, tmp_path / "ref" / "model.pt", cache, resume=False)
    assert done.returncode == 0, done.stderr
    reference = faults.final_weights(tmp_path / "ref" / "model.pt")
    work = tmp_path / "killed"
    work.mkdir()
    trial = faults.run_trial(corpus, cache, work, reference, random.Random(0), kills=1,
                             max_delay=1.0)
    assert trial.resumed_ok, trial.detail
    assert trial.max_diff == 0.0
    assert trial.temp_files == 0 or trial.kill_times  # a kill mid-write may leave one
