"""Speed and memory of learned_ssm inference, against MSAF's algorithms and the author's path.

Every measurement runs in its own Python process (clean peak RSS, no shared caches); all
rows come from ONE run of this script on one machine, so compare ratios within a run.

Rows, on one 3-4 minute track (``../shared/data/reference_audio/pop909_001.flac`` when
present, else a synthesised 200 s track):

(a) ``msaf.process(path, boundaries_id="learned_ssm")`` cold: new process, no feature
    cache (the audio is copied to a fresh folder and the process runs in a fresh working
    directory, where MSAF's single-file mode writes ``.features_msaf_tmp.json``); with
    MSAF's default feature (pcp, beat-synchronous) and with ``feature="learned_ssm",
    framesync=True``.
(b) ``Analyzer(model).analyze(path)`` warm: model loaded, one warm-up call, median of 7;
    with torch's default thread count and with ``torch.set_num_threads(1)``; plus a
    per-stage breakdown (decode, features, encoder, novelty, peaks, beats).
(c) MSAF's foote, sf, olda, scluster, cnmf, vmo through ``msaf.process``, cold as (a).
(d) the author's pipeline settings (:func:`author_pipeline`): ``librosa.load``, librosa's
    mel spectrogram, the encoder one patch at a time, PyTorch's own Transformer layers, and the
    full T x T SSM convolved with the novelty kernels (O(T^2 K^2)); (d') the same with
    all patches in one conv batch (as the author's model call).

Scaling: (b) on 1, 5, 20 and 60 minute tracks (a synthesised 2-minute pattern, tiled),
each in a fresh process, with the log-log growth exponent of time vs duration.

Peak memory is the process's RSS high-water mark (``resource.getrusage``), which includes
the interpreter, torch and the decoded audio.

Usage::

    python bench/speed.py [--quick] [--no-msaf] [--out bench/results/speed.md]

``--quick`` skips the 20/60 minute tracks and the MSAF cold runs (for development).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
REFERENCE_AUDIO = SHARED / "reference_audio" / "pop909_001.flac"
#: Batch rows: the three reference files, four times each (12 files).
BATCH_AUDIO = [SHARED / "reference_audio" / name for name in
               ("pop909_001.flac", "pop909_002.flac", "sargon_mindless_cut.flac")]
if not os.environ.get("SPEED_OTHER_CODE"):  # --before-code: that checkout's package instead
    sys.path.insert(0, str(ROOT))

MSAF_ALGOS = ["foote", "sf", "olda", "scluster", "cnmf", "vmo"]
SCALING_MINUTES = [1, 5, 20, 60]
#: Timed calls per warm row (b), (d), of which the median is reported: single calls vary on
#: the shared 2-core machine (0.14 to 0.24 s for the same track in one development run).
REPEATS = 7
RESULT_TAG = "SPEED_RESULT "
WHAT_B_DOES = (
    "What (b) does that (d) does not (each checked against the reference path by a test): "
    "FLAC decoded in parallel parts; the STFT in float32, in cache-sized blocks over the "
    "threads, up to the last bin the mel filters use, with one BLAS thread per block; the "
    "conv blocks on 16 patches at a time with channels-last weights, max-pool before a "
    "non-negative PReLU, pools as strided maxima; fused attention; the novelty kernels on "
    "the SSM's diagonal band only (O(T K^2), not O(T^2 K^2)).")


# --------------------------------------------------------------------------- helpers


def recorder() -> tuple[list[str], Callable[..., None]]:
    """A report's lines, and ``say(text="")``, which prints a line and keeps it."""
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    return lines, say


def peak_rss_mb() -> float:
    """RSS high-water mark of this process (MB; ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def emit(result: dict) -> None:
    """Print a worker's result on one tagged line for the parent to parse."""
    result["peak_rss_mb"] = peak_rss_mb()
    print(RESULT_TAG + json.dumps(result), flush=True)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def author_pipeline(path: str, model, per_patch: bool = True, peaks=None) -> tuple[np.ndarray, dict]:
    """The author's inference settings, on this package's modules.

    ``librosa.load`` (mono, soxr resampling), the log-mel patches computed with
    ``librosa.feature.melspectrogram`` (:func:`~msaf_learned_ssm.features.log_mel_librosa`,
    as the author's release), the conv encoder
    one patch at a time (``per_patch``; else all patches in one batch), PyTorch's own
    ``TransformerEncoderLayer`` forward (which forms the (heads, T, T) attention weights),
    then the novelty kernels convolved over the whole T x T SSM and its diagonal taken
    (:meth:`NoveltyHead.forward_full`, O(T^2 K^2) time, O(T^2 K) memory).

    Parameters
    ----------
    path : str
        Audio file.
    model : SSMNet
        In eval mode, on the CPU.
    per_patch : bool
        Run the conv blocks on one patch at a time.

    Returns
    -------
    boundaries : np.ndarray, shape (n_boundaries,)
        Boundary times (s).
    timings : dict
        Seconds per stage: decode, features, encoder, novelty, peaks.
    novelty : np.ndarray, shape (T,)
    """
    import librosa
    import torch
    import torch.nn.functional as F

    from msaf_learned_ssm.config import PeakConfig
    from msaf_learned_ssm.features import (average_steps, log_mel_librosa,
                                           patches_from_steps, standardize_bands)
    from msaf_learned_ssm.model import cosine_ssm
    from msaf_learned_ssm.peaks import novelty_to_boundaries

    config = model.config
    t = [time.perf_counter()]
    y, _ = librosa.load(path, sr=config.sample_rate, mono=True)
    t.append(time.perf_counter())
    mel = standardize_bands(log_mel_librosa(y, config))
    steps, step_times = average_steps(mel, config.frames_per_step, config.frame_sec)
    patches = patches_from_steps(steps.astype(np.float32), step_times,
                                 len(y) / config.sample_rate, config)
    t.append(time.perf_counter())
    with torch.no_grad():
        x = torch.from_numpy(patches.data).unsqueeze(1)  # (T, 1, n_mels, steps)
        if per_patch:
            h = torch.cat([model.encoder.conv(x[i:i + 1]).flatten(1) for i in range(len(x))])
        else:
            h = model.encoder.conv(x).flatten(1)
        h = model.encoder.attention(h.unsqueeze(0)).squeeze(0)
        embeddings = F.normalize(torch.tanh(h), p=2, dim=1)
        t.append(time.perf_counter())
        novelty = model.novelty.forward_full(cosine_ssm(embeddings)).numpy()
        t.append(time.perf_counter())
    _, boundaries = novelty_to_boundaries(novelty, patches.times, patches.duration,
                                          config.patch_hop_sec, peaks or PeakConfig())
    t.append(time.perf_counter())
    names = ["decode", "features", "encoder", "novelty", "peaks"]
    return boundaries, {n: t[i + 1] - t[i] for i, n in enumerate(names)}, novelty


def analyzer_stages(analyzer, path: str) -> tuple[np.ndarray, dict]:
    """:meth:`Analyzer.analyze`, stage by stage (same calls), with the seconds of each."""
    import torch

    from msaf_learned_ssm.audio import load_audio
    from msaf_learned_ssm.features import compute_patches
    from msaf_learned_ssm.peaks import novelty_to_boundaries
    from msaf_learned_ssm.sync import sync_boundaries

    device, config = analyzer.device, analyzer.config
    t = [time.perf_counter()]
    y = load_audio(path, config.sample_rate)
    t.append(time.perf_counter())
    patches = compute_patches(y, config, keep_mel=True)
    t.append(time.perf_counter())
    with torch.inference_mode():
        x = torch.from_numpy(patches.data).to(device)
        embeddings = analyzer.model.encoder(x)
        _sync(device)
        t.append(time.perf_counter())
        novelty = analyzer.model.novelty(embeddings).float().cpu().numpy()
        t.append(time.perf_counter())
    _, boundaries = novelty_to_boundaries(novelty, patches.times, patches.duration,
                                          config.patch_hop_sec, analyzer.peaks)
    t.append(time.perf_counter())
    # Beat and bar modes only: the tracker on the same log-mel, then the snapping.
    beats = analyzer.tracker.track_patches(patches)
    sync_boundaries(boundaries, beats, "bar")
    t.append(time.perf_counter())
    names = ["decode", "features", "encoder", "novelty", "peaks", "beats"]
    return boundaries, {n: t[i + 1] - t[i] for i, n in enumerate(names)}


# --------------------------------------------------------------------------- workers


def worker_analyzer(args) -> None:
    """(b): warm Analyzer; warm-up call, then the median of ``repeats`` calls."""
    import torch

    from msaf_learned_ssm import Analyzer

    if args.threads:
        torch.set_num_threads(args.threads)
    analyzer = Analyzer(args.model, device="auto")
    analyzer.analyze(args.warmup or args.audio)  # first call: lazy init, kernel choice
    rss_before = peak_rss_mb()
    times, stages, result = [], [], None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        result = analyzer.analyze(args.audio)
        _sync(analyzer.device)
        times.append(time.perf_counter() - t0)
    if args.stages:
        for _ in range(args.repeats):
            stages.append(analyzer_stages(analyzer, args.audio)[1])
    emit({"seconds": float(np.median(times)), "all_seconds": times,
          "stages": {k: float(np.median([s[k] for s in stages])) for k in stages[0]}
          if stages else {},
          "n_patches": int(len(result.patch_times)), "duration": result.duration,
          "n_boundaries": int(len(result.boundaries)), "device": str(analyzer.device),
          "boundaries": result.boundaries.tolist(), "novelty": result.novelty.tolist(),
          "threads": torch.get_num_threads(), "rss_before_mb": rss_before})


def worker_many(args) -> None:
    """Batch: ``Analyzer.analyze_many`` over a list of files (``--audio`` comma-separated),
    model loaded, one warm-up pass; median of ``repeats`` passes."""
    import torch

    from msaf_learned_ssm import Analyzer

    paths = args.audio.split(",")
    prefetch = None if args.prefetch < 0 else args.prefetch
    if args.threads:
        torch.set_num_threads(args.threads)
    analyzer = Analyzer(args.model, device=args.device)
    options = {"prefetch": prefetch, "batch_tracks": args.batch_tracks,
               "labels": args.labels}
    if args.workers != 1 or not os.environ.get("SPEED_OTHER_CODE"):
        # (code from before issue 24 has no workers argument; it runs one process)
        options["workers"] = args.workers or None
    warm = dict(options)
    if options.get("workers", 1) is None and analyzer.device.type == "cpu":
        # The default picks its process count from the number of files: a 2-file warm-up
        # would run in one process and leave the first timed pass to start the fork
        # server (seconds). Each pass starts its own workers, from that server.
        from msaf_learned_ssm.parallel import default_workers

        warm["workers"] = default_workers(len(paths))
    for _ in analyzer.analyze_many(paths[:2], **warm):
        pass
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        results = list(analyzer.analyze_many(paths, **options))
        _sync(analyzer.device)
        times.append(time.perf_counter() - t0)
    failed = [p for p, r in results if isinstance(r, Exception)]
    if failed:
        raise RuntimeError(f"batch files failed: {failed}")
    if args.workers:
        workers = args.workers
    else:
        from msaf_learned_ssm.parallel import default_workers

        workers = default_workers(len(paths)) if analyzer.device.type == "cpu" else 1
    emit({"seconds": float(np.median(times)), "all_seconds": times, "n_files": len(paths),
          "prefetch": analyzer.default_prefetch() if prefetch is None else prefetch,
          "threads": torch.get_num_threads(), "device": str(analyzer.device),
          "workers": workers, "boundaries": [np.round(r.boundaries, 3).tolist()
                                             for _, r in results]})


def worker_dask(args) -> None:
    """Collection on Dask: ``segment_collection`` on a LocalCluster of 2 single-threaded
    worker processes (cluster started first, not timed), JAMS outputs to a fresh folder."""
    from distributed import Client, LocalCluster

    from msaf_learned_ssm.collection import segment_collection

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster, \
            Client(cluster) as client:
        with tempfile.TemporaryDirectory(prefix="speed_dask_") as tmp:
            # The batch repeats files: links with distinct names, so outputs do not collide.
            paths = []
            for i, path in enumerate(args.audio.split(",")):
                link = Path(tmp) / f"{i:03d}_{Path(path).name}"
                os.symlink(Path(path).resolve(), link)
                paths.append(str(link))
            t0 = time.perf_counter()
            report = segment_collection(paths, Path(tmp) / "out", client=client,
                                        model=args.model, device="cpu", progress=False)
            seconds = time.perf_counter() - t0
    if report.failed:
        raise RuntimeError(f"dask files failed: {report.failed}")
    emit({"seconds": seconds, "n_files": len(paths), "workers": 2})


def worker_msaf_collection(args) -> None:
    """MSAF collection mode: ``msaf.process(folder, n_jobs=2)`` on a fresh dataset folder
    (``feature="learned_ssm", framesync=True``), cold feature cache."""
    import msaf
    import msaf_learned_ssm  # noqa: F401  (registers the algorithm in MSAF)

    with tempfile.TemporaryDirectory(prefix="speed_msafcol_") as tmp:
        (Path(tmp) / "audio").mkdir()
        for i, path in enumerate(args.audio.split(",")):
            shutil.copyfile(path, Path(tmp) / "audio" / f"{i:03d}_{Path(path).name}")
        t0 = time.perf_counter()
        msaf.process(tmp, boundaries_id="learned_ssm", feature="learned_ssm",
                     framesync=True, n_jobs=args.jobs)
        seconds = time.perf_counter() - t0
    emit({"seconds": seconds, "n_files": len(args.audio.split(",")), "n_jobs": args.jobs})


def worker_author(args) -> None:
    """(d): the author's settings, warm (model loaded, warm-up call), median of repeats."""
    import torch

    from msaf_learned_ssm.checkpoint import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    model, meta = load_model(args.model, "cpu")
    model = model.eval()
    # The model file's own peak settings, as (b) uses: same boundaries expected.
    from msaf_learned_ssm.config import PeakConfig

    peaks = PeakConfig(**meta["peaks"]) if isinstance(meta.get("peaks"), dict) else None
    per_patch = args.kind == "author"
    author_pipeline(args.audio, model, per_patch, peaks)
    times, stages = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        boundaries, st, novelty = author_pipeline(args.audio, model, per_patch, peaks)
        times.append(time.perf_counter() - t0)
        stages.append(st)
    emit({"seconds": float(np.median(times)), "all_seconds": times,
          "stages": {k: float(np.median([s[k] for s in stages])) for k in stages[0]},
          "n_boundaries": int(len(boundaries)), "threads": torch.get_num_threads(),
          "boundaries": boundaries.tolist(), "novelty": novelty.tolist()})


def worker_msaf(args) -> None:
    """(a), (c): one cold ``msaf.process`` call in this fresh process."""
    t0 = time.perf_counter()
    import msaf

    config = None
    if args.algo == "learned_ssm":
        import msaf_learned_ssm  # noqa: F401  (registers the algorithm in MSAF)

        if args.model != "default":
            config = msaf.io.get_configuration(args.feature, False, args.framesync,
                                               "learned_ssm", msaf.config.default_label_id)
            config["ssm_model"] = args.model
    t1 = time.perf_counter()
    times, labels = msaf.process(args.audio, boundaries_id=args.algo, feature=args.feature,
                                 framesync=args.framesync, config=config)
    t2 = time.perf_counter()
    emit({"seconds": t2 - t1, "import_seconds": t1 - t0, "n_boundaries": int(len(times))})


# --------------------------------------------------------------------------- parent


class WorkerTimeout(RuntimeError):
    """A benchmark worker ran past its time limit."""


def run_worker(argv: list[str], cwd: Optional[Path] = None, timeout: float = 1800,
               env: Optional[dict] = None) -> dict:
    """Run this script as a worker in a new process (``env``: extra environment
    variables); its result, with the wall time."""
    t0 = time.perf_counter()
    # On a timeout every process of the worker (its own worker processes too: they inherit
    # the handler) prints its threads' stacks before it is killed, so that a run that
    # stalls says where.
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", *argv],
                            cwd=str(cwd or ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, **(env or {})})
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGUSR1)
        time.sleep(2.0)
        os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate()
        raise WorkerTimeout(f"worker {argv[:1]} did not finish in {timeout:.0f} s; the "
                            f"stacks of its processes:\n{stderr[-12000:]}") from None
    wall = time.perf_counter() - t0
    lines = [ln for ln in stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker {argv} failed (rc {proc.returncode}):\n"
                           f"{stdout[-2000:]}\n{stderr[-4000:]}")
    result = json.loads(lines[-1][len(RESULT_TAG):])
    result["wall_seconds"] = wall
    return result


def msaf_cold(algo: str, audio: Path, model: str, feature: str = "pcp",
              framesync: bool = False) -> dict:
    """A cold msaf.process: fresh copy of the audio in its own folder, fresh CWD."""
    with tempfile.TemporaryDirectory(prefix="speed_msaf_") as tmp:
        tmp = Path(tmp)
        (tmp / "audio").mkdir()
        (tmp / "cwd").mkdir()
        copy = tmp / "audio" / audio.name
        shutil.copyfile(audio, copy)
        argv = ["msaf", "--algo", algo, "--audio", str(copy), "--model", model,
                "--feature", feature] + (["--framesync"] if framesync else [])
        return run_worker(argv, cwd=tmp / "cwd")


def get_model(tmp: Path) -> tuple[str, str, str]:
    """(path for workers, path or "default" for MSAF's config, description)."""
    from msaf_learned_ssm import CheckpointError, default_model_path

    try:
        path = default_model_path()
        return str(path), "default", f"the package's default model ({path.name})"
    except CheckpointError:
        import torch

        from msaf_learned_ssm import ModelConfig, SSMNet
        from msaf_learned_ssm.checkpoint import save_model

        torch.manual_seed(0)
        path = tmp / "untrained.pt"
        save_model(SSMNet(ModelConfig()), path)
        return (str(path), str(path), "a freshly initialised SSMNet(ModelConfig()) (no "
                "default model in the package; weights do not change the speed)")


def make_track(path: Path, minutes: float, sr: int = 22050) -> Path:
    """A ``minutes`` long WAV: a 2-minute synthesised pattern of 8 sections, tiled."""
    import soundfile as sf

    from msaf_learned_ssm.examples import synthesize_sections

    pattern, _ = synthesize_sections("ABCDBADC", 15.0, sr=sr)
    n = int(round(minutes * 60 * sr))
    y = np.tile(pattern, -(-n // len(pattern)))[:n]
    sf.write(path, y, sr, subtype="PCM_16")
    return path


def _same(a, b) -> bool:
    return len(a) == len(b) and bool(np.allclose(a, b))


def fmt(x: Optional[float], digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


# ------------------------------------------------------------------ collections (--collection)

COLLECTION_HEADING = "## Collections: worker processes (three-minute MP3s)"
#: Render folder the MP3s are made from, when present (else the reference audio, tiled).
RENDERS = ROOT / "corpora" / "pop909_band" / "audio"


def make_mp3_set(dest: Path, n_files: int = 12, seconds: float = 180.0,
                 sources: Optional[list[Path]] = None) -> list[Path]:
    """``n_files`` MP3s of ``seconds`` each, as users' files are (44.1 kHz stereo), made
    with soundfile (libsndfile's LAME) from the band renders (or ``sources``), each cut to
    ``seconds`` (a shorter source is tiled). A set already in ``dest`` is reused."""
    import soundfile as sf

    from msaf_learned_ssm.audio import resample

    dest.mkdir(parents=True, exist_ok=True)
    made = sorted(dest.glob("[0-9][0-9]_*.mp3"))
    if len(made) >= n_files and sources is None:  # a set made earlier (or carried)
        return made[:n_files]
    if sources is None:
        renders = sorted(RENDERS.glob("*.flac")) if RENDERS.is_dir() else []
        sources = renders[:n_files] or [p for p in BATCH_AUDIO if p.is_file()]
    if not sources:
        sources = [make_track(dest / "synthetic.wav", seconds / 60)]
    out = []
    for i in range(n_files):
        source = sources[i % len(sources)]
        path = dest / f"{i:02d}_{source.stem}.mp3"
        if not path.is_file():
            y, sr = sf.read(source, dtype="float32", always_2d=True)
            y = resample(y.mean(axis=1), sr, 44100)
            n = int(seconds * 44100)
            y = np.tile(y, -(-n // len(y)))[:n]
            tmp = path.with_suffix(".tmp.mp3")
            sf.write(tmp, np.stack([y, y], axis=1) * 0.9, 44100, format="MP3")
            tmp.rename(path)
        out.append(path)
    return out


def collection_rows(model_path: str, mp3s: list[Path], flacs: list[Path], say,
                    repeats: int = 3, before_code: Optional[Path] = None,
                    row_timeout: float = 3600, labels: bool = True,
                    gpu_workers: Sequence[int] = (1, 4, 8, 16),
                    gpu_prefetch: Sequence[int] = ()) -> None:
    """Files per second of ``analyze_many`` against the worker processes, in one run
    (``before_code``: a folder whose ``msaf_learned_ssm`` is an earlier version, for a row
    of that version's default). A row that fails or runs past ``row_timeout`` seconds is
    reported as such (with the worker's stacks in the log) and the others still run.
    ``gpu_workers``: the GPU rows' process counts (1: decoding threads); ``gpu_prefetch``:
    extra GPU rows with that many decoding threads."""
    import torch

    from msaf_learned_ssm.parallel import default_threads, default_workers

    cores = default_threads()
    counts = sorted({n for n in (1, 2, 4, 8, 16, 32) if n <= cores} | {cores})
    audio = ",".join(map(str, mp3s))
    rows = []

    def measure(label: str, files: str, *extra: str, env: Optional[dict] = None,
                into: Optional[list] = None) -> Optional[dict]:
        print(f"collection: {label} ...", flush=True)
        try:
            r = run_worker(["many", "--model", model_path, "--audio", files, "--repeats",
                            str(repeats), *extra], timeout=row_timeout, env=env)
        except RuntimeError as exc:  # WorkerTimeout too
            print(f"collection: {label} FAILED: {exc}", flush=True)
            r = {"error": "did not finish in {:.0f} s".format(row_timeout)
                 if isinstance(exc, WorkerTimeout) else "failed (see the log)"}
        (rows if into is None else into).append((label, r))
        return None if "error" in r else r

    old = None
    if before_code is not None:
        old = measure(f"1 process, all cores, the code before issue 24 (`{before_code}`)",
                      audio, "--device", "cpu", "--workers", "1",
                      env={"PYTHONPATH": str(before_code), "SPEED_OTHER_CODE": "1"})
    before = measure("1 process, all cores (before: the default until issue 24)", audio,
                     "--device", "cpu", "--workers", "1")
    for n in counts[1:]:
        measure(f"{n} processes", audio, "--device", "cpu", "--workers", str(n))
    default = measure("default (`workers=None`)", audio, "--device", "cpu", "--workers", "0")
    before_l = default_l = None
    if labels:
        before_l = measure("1 process, all cores, labels (the CLI's default)", audio,
                           "--device", "cpu", "--workers", "1", "--labels")
        default_l = measure("default, labels", audio, "--device", "cpu", "--workers", "0",
                            "--labels")
    gpu_rows: list = []
    if torch.cuda.is_available():
        files = {"MP3": ",".join(map(str, mp3s * 3))}
        if flacs:
            files["FLAC"] = ",".join(map(str, flacs * 3))
        for kind, listing in files.items():
            for n in [c for c in gpu_workers if c <= cores]:
                label = (f"GPU, {kind}, decoding threads (`workers=1`, default prefetch)"
                         if n == 1 else f"GPU, {kind}, {n} decoding processes")
                measure(label, listing, "--device", "cuda", "--workers", str(n),
                        into=gpu_rows)
            for k in gpu_prefetch:
                measure(f"GPU, {kind}, {k} decoding threads (`workers=1, prefetch={k}`)",
                        listing, "--device", "cuda", "--workers", "1", "--prefetch", str(k),
                        into=gpu_rows)

    def rate(r: Optional[dict]) -> Optional[float]:
        return None if r is None or "error" in r else r["n_files"] / r["seconds"]

    base = rate(before)
    say(COLLECTION_HEADING)
    say()
    say(f"`Analyzer.analyze_many` on {len(mp3s)} three-minute MP3s (44.1 kHz stereo, made "
        "from the band renders with soundfile), model loaded, one warm-up pass, median of "
        f"{repeats} passes; each row in a fresh process. `N processes`: `workers=N`, each "
        f"with {cores} // N threads (`msaf_learned_ssm.parallel.worker_threads`). "
        f"{cores} cores; the default here is {default_workers(len(mp3s))} processes. GPU "
        "rows: the same files three times (and as FLAC).")
    say()
    say("| device | workers | threads per worker | labels | seconds | files per second | "
        "× before | same boundaries as before |")
    say("|---|---|---:|---|---:|---:|---:|---|")
    gpu_name = torch.cuda.get_device_name(0) if gpu_rows else ""
    for device, (label, r) in ([("CPU", row) for row in rows]
                               + [(gpu_name, row) for row in gpu_rows]):
        if "error" in r:
            say(f"| {device} | {label} | | {'yes' if 'labels' in label else 'no'} | "
                f"{r['error']} | | | |")
            continue
        threads = (max(1, cores // r["workers"]) if r["workers"] > 1
                   else r["prefetch"] if device != "CPU" else r["threads"])
        n_before = len(before["boundaries"]) if before else 0
        same = ("—" if before is None else "yes" if r["boundaries"][:n_before] ==
                before["boundaries"] else "NO")
        say(f"| {device} | {label} | {threads} | {'yes' if 'labels' in label else 'no'} | "
            f"{r['seconds']:.2f} | {rate(r):.2f} | "
            f"{fmt(None if base is None else rate(r) / base)} | {same} |")
    say()
    if rate(old) and rate(default):
        say(f"Default against the code before issue 24 (the default a user had): "
            f"**{rate(default) / rate(old):.2f}x** without labels.")
    if base and rate(default):
        text = f"Default against before: **{rate(default) / base:.2f}x** the files per second "
        if rate(before_l) and rate(default_l):
            text += (f"without labels, **{rate(default_l) / rate(before_l):.2f}x** with "
                     "labels ")
        say(text + "(target on 2 cores, issue 24: at least 1.6x).")
    say()


def replace_section(path: Path, heading: str, lines: list[str]) -> None:
    """Write ``lines`` (a section starting with ``heading``) into ``path``, replacing that
    section (up to the next ``## `` heading) if present, else appending it; atomic."""
    old = path.read_text().splitlines() if path.is_file() else []
    if heading in old:
        start = old.index(heading)
        end = next((i for i in range(start + 1, len(old)) if old[i].startswith("## ")),
                   len(old))
        new = old[:start] + lines + old[end:]
    else:
        new = old + ([""] if old and old[-1] else []) + lines
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(new).rstrip("\n") + "\n")
    tmp.replace(path)


def _commit(folder: Path) -> str:
    """Short git commit of the checkout holding ``folder`` ("unknown" outside git)."""
    out = subprocess.run(["git", "-C", str(folder.resolve()), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def collection_main(args) -> None:
    """``--collection``: only the worker-process rows, written into ``--out``'s section."""
    import platform as _platform

    import soundfile as sf

    # On a GPU image where MSAF 0.1.80 does not import (numpy 2), a stand-in registers the
    # plugin; analyze_many does not use MSAF.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gpu import ensure_msaf_importable

    ensure_msaf_importable()
    with tempfile.TemporaryDirectory(prefix="speed_col_") as tmp:
        tmp = Path(tmp)
        model_path, _, model_desc = get_model(tmp)
        mp3_dir = args.mp3_dir or tmp / "mp3"
        t0 = time.perf_counter()
        mp3s = make_mp3_set(mp3_dir, args.n_files)
        flacs = []
        for mp3 in mp3s:
            flac = tmp / (mp3.stem + ".flac")
            y, sr = sf.read(mp3, dtype="float32")
            sf.write(flac, y, sr)
            flacs.append(flac)
        body, say = recorder()
        collection_rows(model_path, mp3s, flacs, say, args.repeats, args.before_code,
                        args.row_timeout, not args.no_labels,
                        [int(n) for n in args.gpu_workers.split(",") if n],
                        [int(n) for n in args.gpu_prefetch.split(",") if n])
    # The run's description goes under the section's heading, once the run is over.
    about = [
        f"- Date: {datetime.datetime.now().isoformat(timespec='seconds')}; machine: "
        f"{_platform.machine()}, {os.cpu_count()} logical cores; load average at the end "
        f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}; model: {model_desc}.",
        f"- Command: `python bench/speed.py {' '.join(sys.argv[1:])}`; "
        f"{(time.perf_counter() - t0) / 60:.1f} min"
        + (f"; `--before-code` {args.before_code}: the package at commit "
           f"{_commit(args.before_code / 'msaf_learned_ssm')}" if args.before_code else "")
        + "."]
    print("\n".join(about))
    replace_section(args.out, COLLECTION_HEADING, body[:1] + [""] + about + body[1:])
    print(f"\nwrote the section into {args.out}")


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="skip the 20/60 minute tracks and the MSAF cold runs")
    parser.add_argument("--no-msaf", action="store_true", help="skip the MSAF cold runs")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "speed.md")
    parser.add_argument("--collection", action="store_true",
                        help="only the worker-process rows (section of --out replaced)")
    parser.add_argument("--n-files", type=int, default=12, help="--collection: MP3s")
    parser.add_argument("--repeats", type=int, default=3, help="--collection: passes")
    parser.add_argument("--before-code", type=Path, default=None,
                        help="--collection: a folder whose msaf_learned_ssm is an earlier "
                             "version (a row of its default, for the ratio)")
    parser.add_argument("--row-timeout", type=float, default=3600,
                        help="--collection: seconds a row may take (it is then reported as "
                             "unfinished, with its stacks in the log)")
    parser.add_argument("--no-labels", action="store_true",
                        help="--collection: skip the rows with labels")
    parser.add_argument("--gpu-workers", default="1,4,8,16",
                        help="--collection: process counts of the GPU rows (1: threads)")
    parser.add_argument("--gpu-prefetch", default="",
                        help="--collection: extra GPU rows with this many decoding threads")
    parser.add_argument("--mp3-dir", type=Path, default=None,
                        help="--collection: folder of the MP3s (made, or reused)")
    args = parser.parse_args(argv)
    if args.collection:
        collection_main(args)
        return

    import torch

    lines, say = recorder()
    with tempfile.TemporaryDirectory(prefix="speed_") as tmp:
        tmp = Path(tmp)
        model_path, msaf_model, model_desc = get_model(tmp)
        if REFERENCE_AUDIO.is_file():
            audio = REFERENCE_AUDIO
            audio_desc = f"`{REFERENCE_AUDIO.name}` (POP909 song 001, FLAC 22.05 kHz mono)"
        else:
            import soundfile as sf

            from msaf_learned_ssm.examples import synthesize_sections

            y, _ = synthesize_sections("ABCDEBACDB", 20.0)
            audio = tmp / "synthetic_200s.wav"
            sf.write(audio, y, 22050)
            audio_desc = "a synthesised 200 s track (reference audio not present)"
        warmup = tmp / "warmup.wav"
        make_track(warmup, 0.5)

        t_start = time.perf_counter()
        rows: dict[str, dict] = {}
        common = ["--model", model_path, "--audio", str(audio), "--warmup", str(warmup)]
        print("(b) Analyzer, default threads ...", flush=True)
        rows["b"] = run_worker(["analyzer", *common, "--repeats", str(REPEATS), "--stages"])
        print("(b) Analyzer, 1 thread ...", flush=True)
        rows["b1"] = run_worker(["analyzer", *common, "--repeats", str(REPEATS), "--stages",
                                 "--threads", "1"])
        print("(d) author's settings ...", flush=True)
        rows["d"] = run_worker(["author", "--model", model_path, "--audio", str(audio),
                                "--repeats", str(REPEATS)])
        batch = ",".join([str(p) for p in BATCH_AUDIO if p.is_file()] * 4 or [str(audio)] * 6)
        for key, extra in [("many", ["--prefetch", "-1"]), ("many_prefetch", ["--prefetch", "2"]),
                           ("many_batch4", ["--batch-tracks", "4"]),
                           ("many_labels", ["--labels"])]:
            print(f"batch {key} ...", flush=True)
            rows[key] = run_worker(["many", "--model", model_path, "--audio", batch,
                                    "--repeats", "3", *extra])
        rows["dask"] = run_worker(["dask", "--model", model_path, "--audio", batch])
        rows["msaf_col"] = run_worker(["msaf_collection", "--model", model_path, "--audio",
                                       batch, "--jobs", "2"])
        rows["d_batch"] = run_worker(["author_batch", "--model", model_path, "--audio",
                                      str(audio), "--repeats", str(REPEATS)])
        # librosa's mel product runs on OpenBLAS, whose threads keep spinning afterwards
        # and slow the encoder that follows; the plugin limits them (features.log_mel).
        # This row gives the author's path the same advantage.
        rows["d_blas1"] = run_worker(["author", "--model", model_path, "--audio", str(audio),
                                      "--repeats", str(REPEATS)],
                                     env={"OPENBLAS_NUM_THREADS": "1"})
        run_msaf = not (args.quick or args.no_msaf)
        if run_msaf:
            for name, feature, framesync in [("a_pcp", "pcp", False),
                                             ("a_grid", "learned_ssm", True)]:
                print(f"(a) msaf.process learned_ssm {feature} ...", flush=True)
                rows[name] = msaf_cold("learned_ssm", audio, msaf_model, feature, framesync)
            for algo in MSAF_ALGOS:
                print(f"(c) msaf.process {algo} ...", flush=True)
                rows["c_" + algo] = msaf_cold(algo, audio, msaf_model)

        minutes = SCALING_MINUTES[:2] if args.quick else SCALING_MINUTES
        scaling = []
        for m in minutes:
            print(f"scaling: {m} min ...", flush=True)
            track = make_track(tmp / f"track_{m}min.wav", m)
            res = run_worker(["analyzer", "--model", model_path, "--audio", str(track),
                              "--warmup", str(warmup), "--repeats", "3" if m <= 5 else "1",
                              "--stages" if m <= 5 else "--no-stages"], timeout=3600)
            scaling.append((m, res))
            track.unlink()
        total = time.perf_counter() - t_start

    # ------------------------------------------------------------------ report
    b = rows["b"]["seconds"]
    say("# learned_ssm inference speed")
    say()
    say(f"- Date: {datetime.datetime.now().isoformat(timespec='seconds')}")
    say(f"- Machine: {platform.node()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} logical cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}; load average at the end "
        f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    say(f"- Python {platform.python_version()}, torch {torch.__version__}, default torch "
        f"threads {rows['b']['threads']}; device of (b): {rows['b']['device']} "
        f"(device=\"auto\"; CUDA available: {torch.cuda.is_available()})")
    say("- Shared machine: absolute times drift with other load (see the load average); "
        "compare the ratios, which come from this one run.")
    if torch.cuda.is_available():
        say(f"- GPU: {torch.cuda.get_device_name(0)}; (b) ran on {rows['b']['device']}.")
    else:
        say("- GPU: none on this machine (CPU rows only); on a CUDA machine "
            "`device=\"auto\"` selects the GPU for the encoder and the novelty head.")
    say("- GPU rows (inference files per second in float32 and mixed precision, training "
        "seconds per epoch): `bench/results/speed_gpu.md`, from `bench/gpu.py` on a GPU "
        "machine.")
    say(f"- Model: {model_desc}.")
    say(f"- Track: {audio_desc}, {rows['b']['duration']:.1f} s, "
        f"{rows['b']['n_patches']} patches.")
    say(f"- Command: `python bench/speed.py{' --quick' if args.quick else ''}"
        f"{' --no-msaf' if args.no_msaf else ''}`; total {total / 60:.1f} min.")
    say()
    say("## One track, end to end")
    say()
    say(f"Seconds: (b) and (d) warm, median of {REPEATS} (model loaded, one warm-up call); MSAF rows "
        "cold: `msaf.process` time in a new process with no feature cache, and the "
        "process wall time including Python start, imports and model loading. Peak RSS "
        "of the measuring process.")
    say()
    say("| Row | What | seconds | process wall (s) | peak RSS (MB) | × (b) |")
    say("|---|---|---:|---:|---:|---:|")

    def row(key: str, label: str, what: str) -> None:
        r = rows.get(key)
        if r is None:
            return
        say(f"| {label} | {what} | {fmt(r['seconds'])} | "
            f"{fmt(r['wall_seconds']) if key.startswith(('a_', 'c_')) else '—'} | "
            f"{r['peak_rss_mb']:.0f} | {r['seconds'] / b:.2f} |")

    row("b", "(b)", f"`Analyzer(model).analyze(path)`, {rows['b']['threads']} threads")
    row("b1", "(b1)", "`Analyzer(model).analyze(path)`, `torch.set_num_threads(1)`")
    row("a_pcp", "(a)", "`msaf.process(path, boundaries_id=\"learned_ssm\")` cold "
        "(pcp, beat-sync)")
    row("a_grid", "(a')", "same, `feature=\"learned_ssm\", framesync=True`")
    for algo in MSAF_ALGOS:
        row("c_" + algo, "(c)", f"`msaf.process(path, boundaries_id=\"{algo}\")` cold")
    row("d", "(d)", "author's settings: librosa.load, per-patch encoder, full T×T SSM "
        "convolution")
    row("d_batch", "(d')", "as (d) with all patches in one conv batch")
    row("d_blas1", "(d'')", "as (d) with `OPENBLAS_NUM_THREADS=1` (no spinning BLAS "
        "threads after librosa's mel product)")
    say()
    say(WHAT_B_DOES)
    say()
    say("## Batch (model loaded once)")
    say()
    m = rows["many"]
    say(f"`Analyzer.analyze_many` over {m['n_files']} files "
        f"({'the three reference files, four times each' if BATCH_AUDIO[0].is_file() else 'the track above, six times'}); "
        "median of 3 passes after a warm-up.")
    say()
    say("| setting | seconds | files per second |")
    say("|---|---:|---:|")
    for key, label in [("many", f"default (`None`, here {m['prefetch']}: 2 with a GPU or "
                                "spare CPU cores, else 0)"),
                       ("many_prefetch", "2 (decode the next files in background threads)"),
                       ("many_batch4", "default, `batch_tracks=4` (4 files per forward "
                                       "pass: for GPUs)"),
                       ("many_labels", "default, `labels=True` (beats and chroma for the "
                                       "labels, as the CLI and MSAF compute them)")]:
        r = rows[key]
        say(f"| {label} | {r['seconds']:.2f} | {r['n_files'] / r['seconds']:.1f} |")
    say()
    say("Collections, same files, cold workers (each loads the model and imports torch): "
        "`segment_collection` on a Dask `LocalCluster` of 2 single-threaded worker "
        "processes (JAMS written, labels included; cluster start not timed), and MSAF's "
        "collection mode `msaf.process(folder, boundaries_id=\"learned_ssm\", "
        "feature=\"learned_ssm\", framesync=True, n_jobs=2)` (fresh folder and feature "
        "cache; worker start timed).")
    say()
    say("| collection | seconds | files per second |")
    say("|---|---:|---:|")
    for key, label in [("dask", "Dask LocalCluster, 2 workers"),
                       ("msaf_col", "MSAF collection mode, n_jobs=2")]:
        r = rows[key]
        say(f"| {label} | {r['seconds']:.2f} | {r['n_files'] / r['seconds']:.1f} |")
    say()
    say(f"## Per stage (seconds, median of {REPEATS})")
    say()
    names = ["decode", "features", "encoder", "novelty", "peaks", "beats"]
    say("`beats`: beat tracking and bar snapping, run in the beat and bar modes only "
        "(the tracker reads the log-mel of `features`).")
    say()
    say("| Row | " + " | ".join(names) + " |")
    say("|---|" + "---:|" * len(names))
    for key, label in [("b", "(b)"), ("b1", "(b1) 1 thread"), ("d", "(d)"),
                       ("d_batch", "(d')"), ("d_blas1", "(d'')")]:
        st = rows[key]["stages"]
        say(f"| {label} | " + " | ".join(fmt(st.get(n), 3) for n in names) + " |")
    say()
    say(f"Ratios: (d)/(b) = {rows['d']['seconds'] / b:.2f}, (d')/(b) = "
        f"{rows['d_batch']['seconds'] / b:.2f}, (d'')/(b) = "
        f"{rows['d_blas1']['seconds'] / b:.2f}, (b)/(b1) = {b / rows['b1']['seconds']:.2f}"
        + ("".join(f", {algo} cold/(b) = {rows['c_' + algo]['seconds'] / b:.2f}"
                   for algo in MSAF_ALGOS) if run_msaf else ""))
    d_ratio = min(rows[k]["seconds"] for k in ("d", "d_batch", "d_blas1")) / b
    if run_msaf:
        a_grid = rows["a_grid"]["seconds"]
        say(f"Target (issue 12): (a') cold `msaf.process` with `feature=\"learned_ssm\"` at "
            f"most 3 s: **{a_grid:.2f} s, {'met' if a_grid <= 3 else 'NOT met'}** (the "
            "feature gives MSAF the package's beats instead of HPSS + librosa's tracker).")
    say(f"Target (issue 5): (b) at least 3x faster than (d), taking the fastest of (d), "
        f"(d'), (d''): **{d_ratio:.2f}x, {'met' if d_ratio >= 3 else 'NOT met'}**; faster than every MSAF algorithm's cold "
        f"run: **{'yes' if run_msaf and all(rows['c_' + a]['seconds'] > b for a in MSAF_ALGOS) else ('not measured' if not run_msaf else 'NO')}**.")
    say()
    say("Same result: (b) and (d) give the same boundaries: "
        f"**{'yes' if _same(rows['b']['boundaries'], rows['d']['boundaries']) else 'NO'}**"
        "; largest novelty difference "
        f"{np.abs(np.subtract(rows['b']['novelty'], rows['d']['novelty'])).max():.1e} "
        "(the parity test bounds (b) against the author's outputs at 1e-4).")
    say()
    say("## Scaling of (b) with track length")
    say()
    say("Synthesised tracks (a 2-minute pattern tiled, 22.05 kHz mono WAV), each in a fresh "
        "process (warm-up on a 30 s clip); median of 3 runs up to 5 min, one run beyond.")
    say()
    say("| minutes | patches | seconds | s per audio minute | peak RSS (MB) | RSS before "
        "(MB) |")
    say("|---:|---:|---:|---:|---:|---:|")
    for m, r in scaling:
        say(f"| {m} | {r['n_patches']} | {r['seconds']:.2f} | {r['seconds'] / m:.3f} | "
            f"{r['peak_rss_mb']:.0f} | {r['rss_before_mb']:.0f} |")
    dur = np.array([m for m, _ in scaling], float)
    sec = np.array([r["seconds"] for _, r in scaling])
    slope = np.polyfit(np.log(dur), np.log(sec), 1)[0]
    last = np.log(sec[-1] / sec[-2]) / np.log(dur[-1] / dur[-2])
    say()
    say(f"Growth exponent (log-log slope of time vs duration): {slope:.2f} over "
        f"{dur[0]:.0f}-{dur[-1]:.0f} min; {last:.2f} between the two longest tracks "
        "(1 = linear).")
    if not args.quick:
        say()
        with tempfile.TemporaryDirectory(prefix="speed_col_") as tmp:
            mp3s = make_mp3_set(Path(tmp) / "mp3")
            collection_rows(model_path, mp3s, [], say)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"\nwrote {args.out}")


def worker_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["analyzer", "author", "author_batch", "msaf", "many",
                                         "dask", "msaf_collection"])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--prefetch", type=int, default=-1, help="many: -1 = auto")
    parser.add_argument("--batch-tracks", type=int, default=1, help="many: files per pass")
    parser.add_argument("--labels", action="store_true", help="many: labels=True")
    parser.add_argument("--workers", type=int, default=1, help="many: processes (0 = auto)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", required=True)
    parser.add_argument("--audio", required=True)
    parser.add_argument("--warmup")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--stages", action="store_true")
    parser.add_argument("--no-stages", dest="stages", action="store_false")
    parser.add_argument("--algo", default="learned_ssm")
    parser.add_argument("--feature", default="pcp")
    parser.add_argument("--framesync", action="store_true")
    args = parser.parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore")
    import faulthandler

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # see run_worker
    {"analyzer": worker_analyzer, "author": worker_author, "author_batch": worker_author,
     "msaf": worker_msaf, "many": worker_many, "dask": worker_dask,
     "msaf_collection": worker_msaf_collection}[args.kind](args)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2:])
    else:
        main()
