"""Fault injection: training killed with SIGKILL at random points, then resumed, must end
with the same weights as an uninterrupted run; a diverging run and colliding outputs must
fail cleanly.

Writes a tiny synthetic corpus to a temporary folder, trains a tiny model
(``--attention-layers 1 --epochs 2 --checkpoint-every 1``) with ``python -m
msaf_learned_ssm.cli train`` once without interruption, then for each trial starts the
same run, kills it (SIGKILL, no chance to clean up) at a random moment after its first
resume state was written, and runs ``--resume`` until it completes (each resumed run may be
killed again). The final ``MODEL.state.pt`` weights are compared with the uninterrupted
run's. Then four misuse cases: training with ``--lr 1e8`` must stop with one ``error:`` line
(exit 2) and leave no non-finite weights on disk; segmenting ``a/song.wav`` and
``b/song.wav`` into one folder must be refused (exit 2) before any output is written; two
trainings started at once on one ``--out`` (seeds 0 and 5): one must refuse with one
``error:`` line naming the other's process id (exit 2), the other must complete, alone in
its files; and a Dask rerun (``segment --scheduler local``) of ``c/song.wav`` into the
folder holding ``a/song.wav``'s result must not skip it as done: it is refused without
``--overwrite`` (a's result kept) and redone with it. Prints tables and exits with status 1
on any mismatch, failed resume or failed misuse check.

Usage::

    python bench/faults.py [--trials 3] [--kills-per-trial 2] [--seed 0]
    python bench/faults.py --trials 0 --misuse concurrent,dask   # only these cases
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

EPOCHS = 2


def write_corpus(root: Path, n_tracks: int = 4, seed: int = 0) -> Path:
    """A corpus in MSAF layout: ``audio/t<k>.wav`` (48 s of 4 sections) and references."""
    from msaf_learned_ssm.examples import write_synthetic_corpus

    return write_synthetic_corpus(root, n_tracks, seed=seed)


def train_command(corpus: Path, out: Path, cache: Path, resume: bool,
                  seed: int = 0) -> list[str]:
    return [sys.executable, "-m", "msaf_learned_ssm.cli", "train", str(corpus), "--out", str(out),
            "--epochs", str(EPOCHS), "--checkpoint-every", "1", "--attention-layers", "1",
            "--val-split", "0.25", "--seed", str(seed), "--device", "cpu", "--cache-dir",
            str(cache), "--patience", "10"] + (["--resume"] if resume else [])


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def run_to_completion(corpus: Path, out: Path, cache: Path, resume: bool,
                      timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(train_command(corpus, out, cache, resume), env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def run_and_kill(corpus: Path, out: Path, cache: Path, resume: bool, delay: float,
                 timeout: float = 300) -> tuple[bool, float]:
    """Start a run; SIGKILL it ``delay`` s after it (re)wrote its resume state.

    Returns
    -------
    killed : bool
        False when the run finished before the kill.
    at : float
        Seconds since the start when it was killed (or finished).
    """
    state = out.with_suffix(".state.pt")
    before = state.stat().st_mtime_ns if state.exists() else None
    started = time.perf_counter()
    proc = subprocess.Popen(train_command(corpus, out, cache, resume), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Wait for a new resume state from this process (some checkpoints were written).
        while proc.poll() is None:
            if state.exists() and state.stat().st_mtime_ns != before:
                break
            if time.perf_counter() - started > timeout:
                raise TimeoutError("training wrote no resume state")
            time.sleep(0.02)
        deadline = time.perf_counter() + delay
        while proc.poll() is None and time.perf_counter() < deadline:
            time.sleep(0.01)
        if proc.poll() is not None:
            return False, time.perf_counter() - started
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True, time.perf_counter() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def final_weights(out: Path) -> dict:
    from msaf_learned_ssm.checkpoint import read_checkpoint

    return read_checkpoint(out.with_suffix(".state.pt"))["model"]["state_dict"]


def max_abs_difference(a: dict, b: dict) -> float:
    if set(a) != set(b):
        return float("inf")
    return max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0
               for k in a)


@dataclass
class Trial:
    kill_times: list
    resumes: int
    resumed_ok: bool
    max_diff: float
    temp_files: int
    detail: str = ""


def run_trial(corpus: Path, cache: Path, work: Path, reference: dict, rng: random.Random,
              kills: int = 1, max_delay: float = 2.0) -> Trial:
    """One killed-and-resumed training run compared with ``reference`` weights."""
    out = work / "model.pt"
    kill_times, resumes, detail = [], 0, ""
    for k in range(kills):
        resume = out.with_suffix(".state.pt").exists()
        resumes += resume
        killed, at = run_and_kill(corpus, out, cache, resume, rng.uniform(0.0, max_delay))
        if not killed:
            break
        kill_times.append(round(at, 2))
    done = out.with_suffix(".log.jsonl").exists() and len(
        out.with_suffix(".log.jsonl").read_text().splitlines()) == EPOCHS
    ok = True
    if not done or kill_times:
        resume = out.with_suffix(".state.pt").exists()
        resumes += resume
        result = run_to_completion(corpus, out, cache, resume)
        ok = result.returncode == 0
        if not ok:
            detail = (result.stderr.strip().splitlines() or ["?"])[-1]
    diff = max_abs_difference(reference, final_weights(out)) if ok else float("nan")
    temps = len([p for p in work.iterdir() if p.name.endswith(".tmp")])
    return Trial(kill_times, resumes, ok, diff, temps, detail)


def check_divergence(corpus: Path, work: Path) -> tuple[bool, str]:
    """Training at lr 1e8: exit 2, an ``error:`` line, nothing non-finite saved."""
    import torch

    from msaf_learned_ssm.checkpoint import read_checkpoint

    out = work / "nan.pt"
    cmd = train_command(corpus, out, work / "cache", resume=False) + ["--lr", "1e8"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    saved_finite = True
    for path in (out, out.with_suffix(".state.pt")):
        if path.exists():
            data = read_checkpoint(path)
            weights = data["model"]["state_dict"] if "model" in data else data["state_dict"]
            saved_finite &= all(bool(torch.isfinite(w).all()) for w in weights.values())
    last = (result.stderr.strip().splitlines() or ["?"])[-1]
    ok = result.returncode == 2 and last.startswith("error:") and saved_finite
    return ok, f"exit {result.returncode}, saved weights finite: {saved_finite}; {last}"


def check_collision(corpus: Path, work: Path) -> tuple[bool, str]:
    """Two inputs named song.wav into one output folder: refused before any work."""
    import shutil

    for sub in ("a", "b"):
        (work / sub).mkdir()
        shutil.copy(next((corpus / "audio").glob("*.wav")), work / sub / "song.wav")
    out = work / "outc"
    cmd = [sys.executable, "-m", "msaf_learned_ssm.cli", "segment", str(work / "a" / "song.wav"),
           str(work / "b" / "song.wav"), "-o", str(out), "--format", "csv", "--device", "cpu"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    last = (result.stderr.strip().splitlines() or ["?"])[-1]
    ok = result.returncode == 2 and not out.exists() and "would both write" in last
    return ok, f"exit {result.returncode}, output folder created: {out.exists()}; {last}"


def check_concurrent_training(corpus: Path, work: Path) -> tuple[bool, str]:
    """Two trainings on one --out at once: one refuses naming the other, which completes."""
    from msaf_learned_ssm.checkpoint import read_checkpoint

    out = work / "dual.pt"
    procs = {seed: subprocess.Popen(train_command(corpus, out, work / "cache", False, seed),
                                    env=_env(), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
             for seed in (0, 5)}
    outputs = {seed: proc.communicate(timeout=600) for seed, proc in procs.items()}
    codes = {seed: proc.returncode for seed, proc in procs.items()}
    if sorted(codes.values()) != [0, 2]:
        return False, f"exit codes {codes} (one 0 and one 2 expected)"
    winner = next(seed for seed, code in codes.items() if code == 0)
    loser = 5 - winner
    last = (outputs[loser][1].strip().splitlines() or ["?"])[-1]
    epochs = len(out.with_suffix(".log.jsonl").read_text().splitlines())
    seed = read_checkpoint(out.with_suffix(".state.pt"))["train_config"]["seed"]
    ok = (last.startswith("error:") and f"process {procs[winner].pid}" in last
          and epochs == EPOCHS and seed == winner)
    return ok, (f"seed {winner} ran {epochs} epochs alone (state seed {seed}); seed {loser}: "
                f"exit 2, {last}")


def check_dask_rerun(corpus: Path, work: Path) -> tuple[bool, str]:
    """A Dask rerun into one folder with another file of the same name: not "done"."""
    import shutil

    songs = sorted((corpus / "audio").glob("*.wav"))[:2]
    for sub, song in zip(("a", "c"), songs):
        (work / sub).mkdir()
        shutil.copy(song, work / sub / "song.wav")
    out = work / "dk"

    def segment(sub: str, *extra: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "msaf_learned_ssm.cli", "segment",
               str(work / sub / "song.wav"), "-o", str(out), "--scheduler", "local",
               "--format", "csv", "--device", "cpu", *extra]
        return subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)

    first = segment("a")
    if first.returncode != 0:
        return False, f"first run: exit {first.returncode}; {first.stderr.strip()[-200:]}"
    from_a = (out / "song.csv").read_bytes()
    second = segment("c")
    kept = (out / "song.csv").read_bytes() == from_a
    third = segment("c", "--overwrite")
    redone = (out / "song.csv").read_bytes() != from_a
    summary = next((line for line in second.stderr.splitlines()
                    if line.startswith("segmented")), "?")
    ok = (second.returncode == 1 and "skipped 0" in summary and kept
          and third.returncode == 0 and redone)
    return ok, (f"rerun with c: exit {second.returncode}, a's result kept: {kept} ({summary}); "
                f"with --overwrite: exit {third.returncode}, c's result written: {redone}")


MISUSE = {"divergence": ("diverging training", check_divergence),
          "collision": ("colliding outputs", check_collision),
          "concurrent": ("concurrent trainings", check_concurrent_training),
          "dask": ("Dask rerun, same name", check_dask_rerun)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--kills-per-trial", type=int, default=2)
    parser.add_argument("--max-delay", type=float, default=2.0,
                        help="Kill up to this many seconds after a resume state was written.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--misuse", default=",".join(MISUSE),
                        help=f"Misuse cases to run, comma-separated ({', '.join(MISUSE)}).")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ssm_faults_") as tmp:
        tmp = Path(tmp)
        corpus, cache = write_corpus(tmp / "corpus"), tmp / "cache"
        failures = 0
        if args.trials > 0:
            failures = _kill_trials(args, corpus, cache, tmp, rng, started)
        print(f"\n{'misuse':<24} {'handled':<8} detail")
        for key in filter(None, args.misuse.split(",")):
            name, check = MISUSE[key]
            work = tmp / name.replace(" ", "_").replace(",", "")
            work.mkdir()
            ok, detail = check(corpus, work)
            failures += not ok
            print(f"{name:<24} {str(ok):<8} {detail}")
    return 1 if failures else 0


def _kill_trials(args, corpus: Path, cache: Path, tmp: Path, rng: random.Random,
                 started: float) -> int:
    """The kill-and-resume trials (table on stdout); the number of failed ones."""
    (tmp / "ref").mkdir()
    result = run_to_completion(corpus, tmp / "ref" / "model.pt", cache, resume=False)
    if result.returncode != 0:
        print(result.stderr, file=sys.stderr)
        return 1
    reference = final_weights(tmp / "ref" / "model.pt")
    print(f"uninterrupted run: {time.perf_counter() - started:.1f} s")
    print(f"{'trial':>5}  {'kill times (s after start)':<28} {'resumes':>7}  "
          f"{'resumed ok':<10}  {'max |dw|':>9}  {'tmp left':>8}")
    failures = 0
    for i in range(args.trials):
        work = tmp / f"trial{i}"
        work.mkdir()
        trial = run_trial(corpus, cache, work, reference, rng, args.kills_per_trial,
                          args.max_delay)
        bad = not trial.resumed_ok or not trial.max_diff == 0.0
        failures += bad
        print(f"{i:>5}  {str(trial.kill_times):<28} {trial.resumes:>7}  "
              f"{str(trial.resumed_ok):<10}  {trial.max_diff:>9.2e}  {trial.temp_files:>8}"
              + (f"  MISMATCH {trial.detail}" if bad else ""))
    print(f"{args.trials - failures}/{args.trials} trials identical to the uninterrupted "
          f"run ({time.perf_counter() - started:.1f} s)")
    return failures


if __name__ == "__main__":
    sys.exit(main())
