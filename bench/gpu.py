"""GPU throughput of learned_ssm: inference files per second and training seconds per epoch.

Run on a machine with a CUDA GPU; every row comes from ONE run of this script, so compare
ratios within it (the CPU rows run on the same machine's cores).

Inference (``Analyzer.analyze_many``, model loaded, one warm-up pass, median of 3 passes
over ``--audio`` repeated ``--repeat`` times):

* the CPU of the same machine (all cores, float32), as the baseline;
* the GPU in float32 with 1, 4 and 8 files per forward pass (``batch_tracks``), with and
  without decoding ahead (``prefetch``), and in mixed precision (bf16, fp16 autocast);
* how far mixed precision moves the output: the largest novelty difference from float32
  on the GPU (the package's stated tolerance is
  ``msaf_learned_ssm.inference.MIXED_PRECISION_TOLERANCE``) and the share of files whose
  boundaries are identical.

Training (``msaf-learned-ssm train ... --augment --max-patches 256``, the settings of the
shipped model, in a subprocess): epochs of a small corpus (``--corpus``: tracks of the
POP909 band training split) on the GPU and on the CPU. An epoch is training steps plus
validation; two runs with different validation sizes separate the two, and the seconds per
epoch of the full training split (340 tracks, 79 validation tracks) follow from the per-track
costs of the last epoch (augmentation draws cached, as from the third epoch of a real run).

Usage (on the GPU machine, after ``pip install --no-deps .``)::

    python bench/gpu.py --audio a.flac b.flac --corpus CORPUS --out speed_gpu.md

If MSAF cannot be imported there (a GPU image with numpy 2, which MSAF 0.1.80 does not
support), a stand-in ``msaf`` module lets ``import msaf_learned_ssm`` register itself: the
Analyzer and the trainer do not use MSAF.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Optional

import numpy as np
from speed import _sync  # bench/speed.py: wait for the GPU before reading the clock

ROOT = Path(__file__).resolve().parents[1]
#: Full training split of the shipped model (runs/band_train_ids.txt) and validation split.
FULL_TRAIN_TRACKS = 340
FULL_VAL_TRACKS = 79
PASSES = 3

_MSAF_STANDIN = {
    "msaf/__init__.py": """
        from types import SimpleNamespace
        from . import algorithms, base
        config = SimpleNamespace(sample_rate=22050, hop_size=1024,
                                 dataset=SimpleNamespace(audio_exts=[".wav", ".mp3"]))
        """,
    "msaf/algorithms/__init__.py": "__all__ = []\n",
    "msaf/algorithms/interface.py": "class SegmenterInterface:\n    pass\n",
    "msaf/base.py": """
        import enum
        class FeatureTypes(enum.Enum):
            framesync = 1
            est_beatsync = 2
            ann_beatsync = 3
        class Features:
            def read_features(self, tol=1e-3):
                raise NotImplementedError
            def write_features(self):
                raise NotImplementedError
        """,
    "msaf/exceptions.py": "class FeaturesNotFound(Exception):\n    pass\n",
    "msaf/input_output.py": """
        def save_estimations(*args, **kwargs):
            raise NotImplementedError
        def read_estimations(*args, **kwargs):
            raise NotImplementedError
        """,
}


def ensure_msaf_importable() -> Optional[str]:
    """Put a stand-in ``msaf`` on the path (this process and its children) when the real
    one cannot be imported; returns the folder, or None when MSAF imports."""
    try:
        import msaf  # noqa: F401
        return None
    except Exception:  # ImportError, or MSAF breaking on numpy 2 / new scipy
        for name in [m for m in sys.modules if m == "msaf" or m.startswith("msaf.")]:
            del sys.modules[name]
    folder = Path(tempfile.mkdtemp(prefix="msaf_standin_"))
    for rel, text in _MSAF_STANDIN.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    sys.path.insert(0, str(folder))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(folder)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    return str(folder)


def time_many(analyzer, paths: list[str], **options) -> tuple[float, list]:
    """Median seconds of :data:`PASSES` passes of ``analyze_many`` (after a warm-up on the
    first few files), and the results of the last pass."""
    warm = paths[:max(2, 2 * options.get("batch_tracks", 1))]
    for _ in analyzer.analyze_many(warm, **options):
        pass
    times, results = [], []
    for _ in range(PASSES):
        _sync(analyzer.device)
        t0 = time.perf_counter()
        results = list(analyzer.analyze_many(paths, **options))
        _sync(analyzer.device)
        times.append(time.perf_counter() - t0)
    failed = [(p, r) for p, r in results if isinstance(r, Exception)]
    if failed:
        raise RuntimeError(f"files failed: {failed[:3]}")
    return float(np.median(times)), [r for _, r in results]


def inference_rows(model: str, paths: list[str], gpu: str, say, sweep: bool = False) -> None:
    import torch

    from msaf_learned_ssm import Analyzer
    from msaf_learned_ssm.inference import MIXED_PRECISION_TOLERANCE

    audio_seconds = None
    rows = [  # (label, device, precision, batch_tracks, prefetch, labels)
        ("CPU, all cores", "cpu", "float32", 1, None, False),
        ("GPU", gpu, "float32", 1, 0, False),
        ("GPU", gpu, "float32", 1, None, False),
        ("GPU", gpu, "float32", 4, None, False),
        ("GPU", gpu, "float32", 8, None, False),
        ("GPU", gpu, "float32", 8, 2, False),
        ("GPU", gpu, "bfloat16", 8, None, False),
        ("GPU", gpu, "float16", 8, None, False),
        ("GPU, labels", gpu, "bfloat16", 8, None, True),
    ]
    if sweep:  # how many files to decode ahead of the GPU
        rows = [rows[0]] + [("GPU", gpu, "float32", 8, n, False) for n in (0, 2, 4, 8, 16)] + [
            ("GPU", gpu, "float32", 1, None, False), ("GPU", gpu, "float32", 8, None, False),
            ("GPU", gpu, "bfloat16", 8, None, False)]
    say("| device | precision | files per pass (`batch_tracks`) | decoded ahead (`prefetch`) "
        "| labels | seconds | files per second | × realtime | × CPU row |")
    say("|---|---|---:|---:|---|---:|---:|---:|---:|")
    outputs: dict[tuple, list] = {}
    base = None
    analyzers: dict[tuple, Analyzer] = {}
    for label, device, precision, batch, prefetch, labels in rows:
        key = (device, precision)
        if key not in analyzers:
            analyzers[key] = Analyzer(model, device=device, precision=precision)
        analyzer = analyzers[key]
        seconds, results = time_many(analyzer, paths, batch_tracks=batch, prefetch=prefetch,
                                     labels=labels)
        if audio_seconds is None:
            audio_seconds = sum(r.duration for r in results)
        outputs.setdefault(key, results)
        base = base or seconds
        ahead = analyzer.default_prefetch() if prefetch is None else prefetch
        say(f"| {label} ({torch.get_num_threads()} threads)" if label.startswith("CPU") else
            f"| {label}", end="")
        say(f" | {precision} | {batch} | {ahead}{' (default)' if prefetch is None else ''} "
            f"| {'yes' if labels else 'no'} | {seconds:.2f} | {len(paths) / seconds:.1f} "
            f"| {audio_seconds / seconds:.0f} | {base / seconds:.1f} |")
    say()
    reference = outputs[(gpu, "float32")]
    say(f"Output of mixed precision against float32 on the GPU, over the {len(reference)} "
        f"files (stated tolerance on the novelty curve: {MIXED_PRECISION_TOLERANCE}):")
    say()
    say("| against GPU float32 | largest novelty difference | files with identical "
        "boundaries |")
    say("|---|---:|---:|")
    for key in [(gpu, "bfloat16"), (gpu, "float16"), ("cpu", "float32")]:
        if key not in outputs or key == (gpu, "float32"):
            continue
        diffs, same = [], 0
        for a, b in zip(reference, outputs[key]):
            diffs.append(float(np.max(np.abs(a.novelty - b.novelty))))
            same += int(len(a.boundaries) == len(b.boundaries)
                        and np.allclose(a.boundaries, b.boundaries))
        where = "CPU" if key[0] == "cpu" else "GPU"
        say(f"| {key[1]} on {where} | {max(diffs):.4f} | {same}/{len(diffs)} |")
    say()


def train_epochs(corpus: Path, train_ids: Path, val_ids: Path, device: str, work: Path,
                 epochs: int = 3) -> list[dict]:
    """Run ``msaf-learned-ssm train`` (shipped model's settings); the epoch records."""
    out = work / f"{device}-{val_ids.stem}" / "model.pt"
    cmd = [sys.executable, "-m", "msaf_learned_ssm.cli", "train", str(corpus),
           "--train-ids", str(train_ids), "--val-ids", str(val_ids), "--epochs", str(epochs),
           "--patience", str(epochs), "--lr", "3e-4", "--seed", "0", "--device", device,
           "--cache-dir", str(work / f"cache-{device}-{val_ids.stem}"),
           "--max-patches", "256", "--augment", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"train failed ({device}):\n{done.stderr[-3000:]}")
    return [json.loads(line) for line in out.with_suffix(".log.jsonl").read_text().splitlines()]


def training_rows(corpus: Path, gpu: str, say) -> None:
    import torch

    ids = sorted(p.stem for p in (corpus / "audio").iterdir())
    if len(ids) < 3:
        raise SystemExit(f"{corpus}: at least 3 tracks needed, found {len(ids)}")
    work = Path(tempfile.mkdtemp(prefix="gpu_train_"))
    # Training and validation tracks must differ (the trainer refuses an overlap): the last
    # two tracks validate, one of them or both.
    train, val_sets = ids[:-2], {1: ids[-1:], 2: ids[-2:]}
    files = {"train": work / "train.txt"}
    files["train"].write_text("\n".join(train) + "\n")
    for n, chosen in val_sets.items():
        files[n] = work / f"val{n}.txt"
        files[n].write_text("\n".join(chosen) + "\n")
    say(f"Corpus: {len(ids)} tracks of the POP909 band training split ({', '.join(ids)}): "
        f"{len(train)} to train on, 1 or 2 to validate on; "
        f"`--augment --max-patches 256 --lr 3e-4`; 3 epochs each; epoch 3 reuses the first "
        "augmentation draw (cached), as every epoch from the third of a real run does.")
    say()
    say("| device | validation tracks | epoch 1 (s) | epoch 2 (s) | epoch 3 (s) |")
    say("|---|---:|---:|---:|---:|")
    last = {}
    for device in dict.fromkeys([gpu, "cpu"]):
        for n_val in val_sets:
            records = train_epochs(corpus, files["train"], files[n_val], device, work)
            last[(device, n_val)] = records[-1]["seconds"]
            label = ("GPU" if device == gpu else f"CPU ({torch.get_num_threads()} threads)")
            say(f"| {label} | {n_val} | " + " | ".join(f"{r['seconds']:.1f}" for r in records)
                + " |")
    say()
    say("Per track (epoch 3; validation = difference of the two runs / difference of "
        f"validation tracks), and an epoch of the full split ({FULL_TRAIN_TRACKS} training, "
        f"{FULL_VAL_TRACKS} validation tracks) computed from them:")
    say()
    say("| device | training step per track (s) | validation per track (s) | full-split epoch "
        "(s, computed) |")
    say("|---|---:|---:|---:|")
    for device in dict.fromkeys([gpu, "cpu"]):
        small, big = last[(device, 1)], last[(device, 2)]
        per_val = max(big - small, 0.0)
        per_step = max(small - per_val, 0.0) / len(train)
        full = per_step * FULL_TRAIN_TRACKS + per_val * FULL_VAL_TRACKS
        say(f"| {'GPU' if device == gpu else 'CPU'} | {per_step:.3f} | {per_val:.3f} "
            f"| {full:.0f} |")
    say()
    say("A validation per track of 0.000 means that the second validation track took less "
        "time than the run-to-run spread; the full-split figure then counts the training "
        "steps only. Epochs 1 and 2 compute each track's augmented draw (decoding, "
        "augmentation, features), which costs far more than the step itself.")
    say()


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--audio", nargs="+", required=True, help="audio files (inference)")
    parser.add_argument("--repeat", type=int, default=3, help="passes over --audio per batch")
    parser.add_argument("--corpus", type=Path, help="small training corpus (MSAF layout)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sweep", action="store_true",
                        help="inference only: files decoded ahead (prefetch) 0 to 16")
    parser.add_argument("--allow-cpu", action="store_true",
                        help="run without a GPU, the GPU rows on the CPU (to check the script)")
    args = parser.parse_args(argv)
    standin = ensure_msaf_importable()
    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        raise SystemExit("no CUDA GPU: this benchmark is for GPU machines")
    lines: list[str] = []

    def say(text: str = "", end: str = "\n") -> None:
        print(text, end=end, flush=True)
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += text + end
        else:
            lines.append(text + end)
        args.out.write_text("".join(lines))  # partial results survive a time limit

    started = time.perf_counter()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    say("# learned_ssm on a GPU")
    say()
    say(f"- Date: {datetime.datetime.now().isoformat(timespec='seconds')}")
    say(f"- Machine: {platform.machine()}, {os.cpu_count()} logical cores; GPU: {gpu}")
    say(f"- Python {platform.python_version()}, torch {torch.__version__}, numpy "
        f"{np.__version__}" + ("; MSAF not importable there, a stand-in module registered "
                               "the plugin (the Analyzer and trainer do not use MSAF)"
                               if standin else ""))
    say(f"- Command: `python bench/gpu.py {' '.join(sys.argv[1:] if argv is None else argv)}`")
    say()
    paths = [str(p) for p in args.audio] * args.repeat
    say(f"## Inference\n\n`Analyzer.analyze_many` over {len(paths)} files ({len(args.audio)} "
        f"distinct files, {args.repeat} times each), model `{args.model}`; median of {PASSES} "
        "passes after a warm-up.")
    say()
    # --allow-cpu (checking the script without a GPU): the "GPU" rows run on the CPU too.
    gpu_device = "cuda" if torch.cuda.is_available() else "cpu"
    inference_rows(args.model, paths, gpu_device, say, sweep=args.sweep)
    if args.corpus is not None:
        say("## Training\n")
        training_rows(args.corpus, gpu_device, say)
    say(f"Total {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
