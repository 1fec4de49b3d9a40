"""Worker processes (issue 24): analyze_many(workers=N), segment --workers, the thread rule."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from msaf_learned_ssm import Analyzer, AudioLoadError, ConfigError, ModelConfig, SSMNet
from msaf_learned_ssm.examples import synthesize_sections
from msaf_learned_ssm.inference import ShortAudioWarning
from msaf_learned_ssm.parallel import (WORKER_MEMORY_BYTES, default_workers, worker_threads)
from msaf_learned_ssm.workers import WorkerDiedError, map_in_processes

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the fork server is Linux's start method")


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    torch.manual_seed(0)
    return Analyzer(SSMNet(ModelConfig(attention_layers=1)).eval(), "cpu")


@pytest.fixture(scope="module")
def tracks(tmp_path_factory) -> list:
    """Five distinct 32-48 s tracks."""
    folder = tmp_path_factory.mktemp("workers")
    paths = []
    for i, labels in enumerate(["ABAB", "AABB", "ABCA", "ABBA", "ACAB"]):
        path = folder / f"track{i}.wav"
        sf.write(path, synthesize_sections(labels, 8.0 + 2 * i, seed=i)[0], 22050)
        paths.append(path)
    return paths


def _same(a, b) -> None:
    np.testing.assert_array_equal(a.boundaries, b.boundaries)
    np.testing.assert_allclose(a.novelty, b.novelty, atol=1e-5)
    np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-5)


def test_two_workers_give_the_results_of_one_in_input_order(analyzer, tracks):
    order = [tracks[3], tracks[0], tracks[4], tracks[1], tracks[2]]
    one = list(analyzer.analyze_many(order, workers=1))
    two = list(analyzer.analyze_many(order, workers=2))
    assert [p for p, _ in two] == [str(p) for p in order] == [p for p, _ in one]
    for (_, a), (_, b) in zip(one, two):
        _same(a, b)
    # Labels and the bar mode need the beat tracker in each worker: the same results too.
    one = list(analyzer.analyze_many(order[:3], workers=1, labels=True))
    two = list(analyzer.analyze_many(order[:3], workers=2, labels=True))
    for (_, a), (_, b) in zip(one, two):
        _same(a, b)
        np.testing.assert_allclose(a.chroma, b.chroma, atol=1e-6)
        np.testing.assert_array_equal(a.labels(), b.labels())


def test_a_bad_file_in_the_middle_is_reported_and_the_rest_done(analyzer, tracks, tmp_path):
    bad = tmp_path / "notes.mp3"
    bad.write_text("not audio\n" * 50)
    missing = tmp_path / "missing.wav"
    order = [tracks[0], bad, tracks[1], missing, tracks[2]]
    results = list(analyzer.analyze_many(order, workers=2))
    assert [p for p, _ in results] == [str(p) for p in order]
    assert isinstance(results[1][1], AudioLoadError) and str(bad) in str(results[1][1])
    assert isinstance(results[3][1], AudioLoadError) and str(missing) in str(results[3][1])
    for (path, result) in (results[0], results[2], results[4]):
        _same(result, analyzer.analyze(path))


def test_warnings_of_a_worker_reach_the_caller(analyzer, tracks, tmp_path):
    short = tmp_path / "short.wav"
    sf.write(short, synthesize_sections("A", 5.0)[0], 22050)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = list(analyzer.analyze_many([tracks[0], short, tracks[1]], workers=2))
    assert len(results[1][1].boundaries) == 2
    assert any(issubclass(w.category, ShortAudioWarning) and str(short) in str(w.message)
               for w in caught)


class _CrashingAnalyzer(Analyzer):
    """An analyzer whose worker dies (as an out-of-memory kill would) on "crash" files;
    a class of this module, so that the workers (which import it) run it."""

    def analyze(self, path, *args, **kwargs):
        if "crash" in str(path):
            os._exit(3)
        return super().analyze(path, *args, **kwargs)


def test_a_worker_that_dies_fails_its_file_only(analyzer, tracks, tmp_path):
    crash = tmp_path / "crash.wav"
    crash.write_bytes(tracks[0].read_bytes())
    crashing = _CrashingAnalyzer.__new__(_CrashingAnalyzer)
    crashing.__dict__.update(analyzer.__dict__)
    order = [tracks[0], tracks[1], crash, tracks[2], tracks[3], tracks[4]]
    results = list(crashing.analyze_many(order, workers=2))
    assert [p for p, _ in results] == [str(p) for p in order]
    assert isinstance(results[2][1], WorkerDiedError) and str(crash) in str(results[2][1])
    for i in (0, 1, 3, 4, 5):
        _same(results[i][1], analyzer.analyze(order[i]))


def _parent_pid(_item) -> int:
    return os.getppid()


@linux_only
def test_workers_are_not_forks_of_the_calling_process():
    """A fork of a process whose torch ran multi-threaded can hang in its first
    multi-threaded operation (OpenMP's pool does not survive fork; seen on 16 cores): the
    workers come from a fork server, not from this process, even after torch has run
    here with several threads."""
    torch.set_num_threads(2)
    torch.randn(256, 256) @ torch.randn(256, 256)
    parents = {pid for _, pid in map_in_processes(_parent_pid, range(4), 2, 1)}
    assert os.getpid() not in parents and len(parents) == 1
    # ... and the workers run torch with several threads.
    shapes = [r for _, r in map_in_processes(_matmul_shape, range(2), 2, 2)]
    assert shapes == [(256, 256)] * 2


def test_an_unguarded_script_runs_once(tracks, tmp_path):
    """Workers never re-run the calling script, so a script without the
    ``if __name__ == "__main__":`` guard works (and runs its job once)."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import torch\n"
        "from msaf_learned_ssm import Analyzer, ModelConfig, SSMNet\n"
        "print('RUN', flush=True)\n"
        "torch.manual_seed(0)\n"
        "a = Analyzer(SSMNet(ModelConfig(attention_layers=1)).eval(), 'cpu')\n"
        f"paths = {[str(p) for p in tracks[:2]]!r}\n"
        "ok = [r for _, r in a.analyze_many(paths, workers=2) if not isinstance(r, Exception)]\n"
        "print('DONE', len(ok), flush=True)\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["RUN", "DONE", "2"], out.stdout + out.stderr[-3000:]


def _matmul_shape(_item) -> tuple:
    return tuple((torch.randn(256, 256) @ torch.randn(256, 256)).shape)


def _threads(_item) -> tuple:
    from threadpoolctl import threadpool_info

    return torch.get_num_threads(), {i["num_threads"] for i in threadpool_info()}


def test_each_worker_gets_its_share_of_the_cores():
    assert worker_threads(2, cores=2) == 1
    assert worker_threads(3, cores=16) == 5
    assert worker_threads(32, cores=16) == 1
    results = list(map_in_processes(_threads, [0, 1, 2], workers=2, threads=3))
    assert [item for item, _ in results] == [0, 1, 2]
    # (a single-threaded BLAS build, as cvxopt's, stays at 1)
    assert all(t == 3 and max(pools) == 3 for _, (t, pools) in results)


def test_default_workers_follow_cores_files_and_memory():
    assert default_workers(n_files=100, cores=16, memory=64 * WORKER_MEMORY_BYTES) == 16
    assert default_workers(n_files=40, cores=64, memory=64 * WORKER_MEMORY_BYTES) == 40
    # A few files: one process (starting workers costs more than they save).
    from msaf_learned_ssm.parallel import WORKERS_MIN_FILES

    assert default_workers(n_files=WORKERS_MIN_FILES - 1, cores=16,
                           memory=64 * WORKER_MEMORY_BYTES) == 1
    assert default_workers(n_files=100, cores=16, memory=4 * WORKER_MEMORY_BYTES) == 4
    assert default_workers(n_files=100, cores=16, memory=0) == 1
    assert default_workers(n_files=0, cores=2, memory=None) >= 1


def test_msaf_collection_workers_get_the_same_share():
    """MSAF's collection mode runs tracks in joblib's loky workers, which give each worker
    cores // n_jobs threads: the rule of worker_threads."""
    from joblib import Parallel, delayed

    got = Parallel(n_jobs=2)(delayed(_threads)(i) for i in range(2))
    assert all(t == worker_threads(2) for t, _ in got)


@pytest.mark.parametrize("workers", [0, -1, 1.5, True, "2"])
def test_bad_worker_counts_are_refused(analyzer, tracks, workers):
    with pytest.raises(ConfigError, match="workers"):
        list(analyzer.analyze_many(tracks[:2], workers=workers))
    with pytest.raises(ConfigError, match="prefetch"):
        list(analyzer.analyze_many(tracks[:2], prefetch=-1))


def _cli(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "msaf_learned_ssm.cli", *map(str, args)],
                          capture_output=True, text=True, **kwargs)


def test_segment_workers_gives_the_same_output(tracks, tmp_path, untrained_model_path):
    common = ["segment", *tracks[:3], "--model", untrained_model_path, "--no-labels"]
    one = _cli(*common, "--workers", "1", "-o", tmp_path / "one", "--format", "csv")
    two = _cli(*common, "--workers", "2", "-o", tmp_path / "two", "--format", "csv")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    assert one.stdout == two.stdout and len(one.stdout.splitlines()) == 3
    for path in tracks[:3]:
        name = path.stem + ".csv"
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "two" / name).read_text()
    refused = _cli(*common, "--workers", "2", "--scheduler", "local", "-o", tmp_path / "d")
    assert refused.returncode == 2 and "--workers" in refused.stderr


def test_ctrl_c_stops_the_workers_cleanly(tracks, tmp_path, untrained_model_path):
    many = [tracks[i % len(tracks)] for i in range(40)]
    links = []
    for i, path in enumerate(many):
        link = tmp_path / f"{i:02d}_{path.name}"
        link.symlink_to(path)
        links.append(link)
    proc = subprocess.Popen([sys.executable, "-m", "msaf_learned_ssm.cli", "segment",
                             *map(str, links), "--model", str(untrained_model_path),
                             "--workers", "2", "-o", str(tmp_path / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    # Wait for the first result, then interrupt the whole process group as a terminal does.
    first = proc.stdout.readline()
    assert first, proc.stderr.read()
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # pragma: no cover - the failure being tested
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("segment did not stop within 60 s of Ctrl-C")
    assert proc.returncode != 0
    assert "Traceback" not in err, err
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # no worker left behind
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("worker processes outlived the interrupted segment")
    done = len(list((tmp_path / "out").glob("*.jams")))
    assert 0 < done < len(links)
    assert not list((tmp_path / "out").glob(".*.tmp"))  # no half-written output


def test_decoding_processes_give_the_patches_a_gpu_run_uses(analyzer, tracks):
    """With a GPU, worker processes decode (_DecodeTask) and the model runs in the calling
    process: the patches they return are those of Analyzer.patches, and their analyses
    those of analyze (checked here on the CPU, as CI has no GPU)."""
    from msaf_learned_ssm.inference import _DecodeTask

    for labels in (False, True):
        task = _DecodeTask(analyzer.config, analyzer.sync, labels)
        got = list(map_in_processes(task, [str(p) for p in tracks[:3]], workers=2, threads=1))
        assert [p for p, _ in got] == [str(p) for p in tracks[:3]]
        for path, patches in got:
            expected = analyzer.patches(path, labels=labels)
            np.testing.assert_allclose(patches.data, expected.data, atol=1e-5)
            np.testing.assert_allclose(patches.times, expected.times)
            assert (patches.chroma is None) == (not labels)
            _same(analyzer.analyze_batch([(patches, path)])[0], analyzer.analyze(path))


def _many_in_a_pool_worker(paths) -> list:
    torch.manual_seed(0)
    analyzer = Analyzer(SSMNet(ModelConfig(attention_layers=1)).eval(), "cpu")
    default = [len(r.boundaries) for _, r in analyzer.analyze_many(paths)]
    try:
        list(analyzer.analyze_many(paths, workers=2))
        refused = ""
    except ConfigError as exc:
        refused = str(exc)
    return [default, refused]


def test_inside_a_daemonic_pool_worker_the_default_stays_in_process(tracks):
    """multiprocessing.Pool workers are daemonic and may not have children: the default
    runs in the worker itself, and an explicit workers=2 is a clear error."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        default, refused = pool.apply(_many_in_a_pool_worker, ([str(p) for p in tracks[:2]],))
    assert len(default) == 2 and all(n >= 2 for n in default)
    assert "daemonic" in refused and "workers=1" in refused


def test_more_workers_than_memory_holds_are_reduced_with_a_warning(analyzer, tracks,
                                                                   monkeypatch):
    from msaf_learned_ssm import parallel

    monkeypatch.setattr(parallel, "available_memory", lambda: 2 * WORKER_MEMORY_BYTES)
    assert parallel.memory_cap(8) == 2 and parallel.memory_cap(1) == 1
    with pytest.warns(UserWarning, match="holds 2 worker processes"):
        results = list(analyzer.analyze_many(tracks[:4], workers=4))
    assert [p for p, _ in results] == [str(p) for p in tracks[:4]]


def test_an_item_queued_on_a_pool_broken_meanwhile_gets_a_failed_future():
    """A worker may die while the next items are queued: their submit must not raise
    (map_in_processes restarts the pool when their turn comes)."""
    from concurrent.futures.process import BrokenProcessPool

    from msaf_learned_ssm.workers import _submit

    class BrokenPool:
        def submit(self, *args, **kwargs):
            raise BrokenProcessPool("a child process terminated abruptly")

    future = _submit(BrokenPool(), "x.wav")
    assert future.done() and isinstance(future.exception(), BrokenProcessPool)
