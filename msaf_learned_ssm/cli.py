"""Command line: ``msaf-learned-ssm segment | train | build-pop909``."""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from typing import Optional

import click
import numpy as np

from .config import PeakConfig
from .errors import LearnedSSMError


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one ``warning:`` line (the default format shows a library's source line,
    e.g. torch's decorator, which means nothing to a user)."""
    click.echo(f"warning: {message}", err=True)


def _output_path(out: Optional[str], audio: str, n_files: int, suffix: str) -> Optional[Path]:
    """Where to write the output of ``audio``: ``out`` itself for one file, or
    ``out/<stem><suffix>`` when ``out`` is a folder (required for several files)."""
    if out is None:
        return None
    out_path = Path(out)
    if out_path.suffix.lower() in (".jams", ".csv", ".png") and n_files == 1:
        return out_path
    if out_path.suffix.lower() in (".jams", ".csv", ".png"):
        raise click.UsageError(f"{out}: with several audio files, give a folder")
    return out_path / (Path(audio).stem + suffix)


class _LazyGroup(click.Group):
    """A click group whose training commands are imported only when run (or listed).

    The training commands live next to the training code (``msaf_learned_ssm_training.cli``);
    segmenting never imports the training stack, and a missing ``[train]`` extra is reported
    when a training command is run, not when ``segment`` is.
    """

    LAZY = {"train": "msaf_learned_ssm_training.cli:train",
            "build-pop909": "msaf_learned_ssm_training.cli:build_pop909"}

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


@main.command()
@click.argument("audio", nargs=-1, required=True)
@click.option("--model", type=click.Path(dir_okay=False), default=None,
              help="Model file (default: the model shipped with the package; the author's "
                   "published state_dicts are accepted too).")
@click.option("--device", default="auto", show_default=True,
              help="auto (CUDA when available), cpu, cuda or cuda:N.")
@click.option("-o", "--output", default=None,
              help="OUT.jams or OUT.csv (one file), or a folder (several files; the format "
                   "from --format).")
@click.option("--format", "fmt", type=click.Choice(["jams", "csv"]), default="jams",
              show_default=True, help="Output format when --output is a folder.")
@click.option("--plot", default=None,
              help="OUT.png (one file) or a folder: SSM, novelty curve and boundaries.")
@click.option("--reference", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Reference JAMS to draw on the plot (one file only).")
@click.option("--labels/--no-labels", default=True, show_default=True,
              help="Label segments by clustering the learned SSM.")
@click.option("--peak-mean-half-sec", type=float, default=10.0, show_default=True)
@click.option("--peak-distance-sec", type=float, default=7.0, show_default=True)
@click.option("--peak-threshold", type=float, default=1.35, show_default=True)
@click.option("--fail-fast", is_flag=True, help="Stop at the first file that fails.")
def segment(audio, model, device, output, fmt, plot, reference, labels, peak_mean_half_sec,
            peak_distance_sec, peak_threshold, fail_fast) -> None:
    """Print the boundaries (s) of each AUDIO file, and write them with -o."""
    from .inference import Analyzer

    try:
        peaks = PeakConfig(peak_mean_half_sec, peak_distance_sec, peak_threshold)
        analyzer = Analyzer(model, device, peaks)
    except LearnedSSMError as exc:
        _fail(str(exc))
        sys.exit(2)
    if reference is not None and len(audio) > 1:
        raise click.UsageError("--reference works with one audio file")
    suffix = ".csv" if (output or "").lower().endswith(".csv") or fmt == "csv" else ".jams"
    if output is not None:
        from msaf_learned_ssm_jams.io import REFERENCES_DIR, is_reference_path

        # Checked once, before any work: a run that would write into a references/
        # folder (human annotations, MSAF layout) is refused as a whole.
        first = _output_path(output, audio[0], len(audio), suffix)
        if is_reference_path(first):
            _fail(f"{output}: refusing to write outputs into a '{REFERENCES_DIR}' folder "
                  "(reference annotations are never modified); choose another -o")
            sys.exit(2)
    failed, n_done, start = [], 0, time.perf_counter()
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        for path, result in analyzer.analyze_many(audio):
            if not _segment_one(path, result, analyzer, output, plot, reference, labels,
                                suffix, len(audio)):
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


def _segment_one(path: str, result, analyzer, output: Optional[str], plot: Optional[str],
                 reference: Optional[str], labels: bool, suffix: str, n_files: int) -> bool:
    """Print and write the result of one file; False (after one ``error:`` line) if it failed."""
    from .labels import label_segments

    try:
        if isinstance(result, Exception):
            raise result
        seg_labels = (label_segments(result.embeddings, result.patch_times,
                                     result.boundaries) if labels else None)
        click.echo(f"{path}\t" + " ".join(f"{b:.3f}" for b in result.boundaries))
        out_path = _output_path(output, path, n_files, suffix)
        if out_path is not None:
            _write_output(out_path, result, seg_labels, analyzer)
        plot_path = _output_path(plot, path, n_files, ".png")
        if plot_path is not None:
            from .plotting import plot_analysis

            ref = _reference_boundaries(reference) if reference else None
            plot_analysis(result, plot_path, ref)
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


def _reference_boundaries(path: str) -> np.ndarray:
    from msaf_learned_ssm_jams.segments import read_segments

    intervals, _ = read_segments(path)
    return np.unique(intervals.ravel())


def _write_output(out_path: Path, result, seg_labels, analyzer) -> None:
    from .fileio import atomic_write_text, segments_csv

    out_path.parent.mkdir(parents=True, exist_ok=True)  # -o out_dir/ may not exist yet
    if out_path.suffix.lower() == ".csv":
        atomic_write_text(out_path, segments_csv(result.boundaries, seg_labels))
        return
    from msaf_learned_ssm_jams.io import write_estimation_jams

    write_estimation_jams(out_path, result.boundaries, labels=seg_labels,
                          duration=result.duration, algo_id="learned_ssm",
                          config={"ssm_model": str(analyzer.meta.get("source", "model")),
                                  **{f"ssm_peak_{k}": v for k, v in
                                     analyzer.peaks.to_dict().items()}})


if __name__ == "__main__":  # pragma: no cover
    main()
