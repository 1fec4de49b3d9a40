"""Data-parallel training under torchrun: 2 CPU processes with gloo, killed and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from msaf_learned_ssm_training.distributed import shard


def test_shard_pads_and_interleaves_like_distributed_sampler():
    order = [5, 3, 0, 4, 1]
    parts = [shard(order, r, 2) for r in range(2)]
    assert parts[0].tolist() == [5, 0, 1] and parts[1].tolist() == [3, 4, 5]
    assert sorted(set(np.concatenate(parts))) == sorted(order)
    assert shard(order, 0, 1).tolist() == order


def _torchrun(corpus, out, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--standalone", "-m", "msaf_learned_ssm.cli", "train", str(corpus),
           "--out", str(out), "--epochs", "3", "--device", "cpu", "--attention-layers", "0",
           "--max-patches", "50", "--checkpoint-every", "1", "--val-split", "0.2",
           "--cache-dir", str(corpus.parent / "cache"), *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _rank_pid(launcher: subprocess.Popen, rank: str) -> int:
    psutil = pytest.importorskip("psutil")
    deadline = time.time() + 60
    while time.time() < deadline:
        for child in psutil.Process(launcher.pid).children(recursive=True):
            try:
                if child.environ().get("RANK") == rank:
                    return child.pid
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        time.sleep(0.1)
    raise AssertionError("no worker process of that rank appeared")


def _epochs_logged(out):
    log = out.with_name("model.log.jsonl")
    return [json.loads(line)["epoch"] for line in log.read_text().splitlines()] \
        if log.is_file() else []


def test_two_gloo_ranks_killed_mid_epoch_resume_to_the_same_epoch_count(tmp_path):
    from msaf_learned_ssm.examples import write_synthetic_corpus

    corpus = write_synthetic_corpus(tmp_path / "corpus", n_tracks=9, section_sec=8.0)

    straight = _torchrun(corpus, tmp_path / "a" / "model.pt")
    output, _ = straight.communicate(timeout=500)
    assert straight.returncode == 0, output
    assert output.count("stopped (") == 1, "rank 0 alone reports"

    out = tmp_path / "b" / "model.pt"
    run = _torchrun(corpus, out)
    victim = _rank_pid(run, "1")
    state = out.with_name("model.state.pt")
    deadline = time.time() + 300
    while not state.is_file() and time.time() < deadline and run.poll() is None:
        time.sleep(0.05)
    assert state.is_file(), "no resume state was written"
    os.kill(victim, signal.SIGKILL)  # rank 1 dies mid-run; torchrun stops rank 0 too
    output, _ = run.communicate(timeout=300)
    assert run.returncode != 0, output
    assert len(_epochs_logged(out)) < 3, "the run was not interrupted"

    resumed = _torchrun(corpus, out, "--resume")
    output, _ = resumed.communicate(timeout=500)
    assert resumed.returncode == 0, output
    assert _epochs_logged(out) == _epochs_logged(tmp_path / "a" / "model.pt") == [1, 2, 3]
    weights = torch.load(out, weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())
