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


@click.group()
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
    from .labels import label_segments

    try:
        peaks = PeakConfig(peak_mean_half_sec, peak_distance_sec, peak_threshold)
        analyzer = Analyzer(model, device, peaks)
    except LearnedSSMError as exc:
        _fail(str(exc))
        sys.exit(2)
    if reference is not None and len(audio) > 1:
        raise click.UsageError("--reference works with one audio file")
    suffix = ".csv" if (output or "").lower().endswith(".csv") or fmt == "csv" else ".jams"
    failed, start = [], time.perf_counter()
    for path, result in analyzer.analyze_many(audio):
        try:
            if isinstance(result, Exception):
                raise result
            seg_labels = (label_segments(result.embeddings, result.patch_times,
                                         result.boundaries) if labels else None)
            click.echo(f"{path}\t" + " ".join(f"{b:.3f}" for b in result.boundaries))
            out_path = _output_path(output, path, len(audio), suffix)
            if out_path is not None:
                _write_output(out_path, result, seg_labels, analyzer)
            plot_path = _output_path(plot, path, len(audio), ".png")
            if plot_path is not None:
                from .plotting import plot_analysis

                ref = _reference_boundaries(reference) if reference else None
                plot_analysis(result, plot_path, ref)
        except LearnedSSMError as exc:
            failed.append(path)
            _fail(str(exc))
            if fail_fast:
                break
    n_done = len(audio) - len(failed)
    click.echo(f"segmented {n_done}/{len(audio)} files in {time.perf_counter() - start:.1f} s"
               + (f"; {len(failed)} failed" if failed else ""), err=True)
    if failed:
        sys.exit(1)


def _reference_boundaries(path: str) -> np.ndarray:
    from jams_adapters.segments import read_segments

    intervals, _ = read_segments(path)
    return np.unique(intervals.ravel())


def _write_output(out_path: Path, result, seg_labels, analyzer) -> None:
    from .fileio import atomic_write_text, segments_csv

    if out_path.suffix.lower() == ".csv":
        atomic_write_text(out_path, segments_csv(result.boundaries, seg_labels))
        return
    from jams_adapters.io import write_estimation_jams

    write_estimation_jams(out_path, result.boundaries, labels=seg_labels,
                          duration=result.duration, algo_id="learned_ssm",
                          config={"ssm_model": str(analyzer.meta.get("source", "model")),
                                  **{f"ssm_peak_{k}": v for k, v in
                                     analyzer.peaks.to_dict().items()}})


if __name__ == "__main__":  # pragma: no cover
    main()
