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
        from jams_adapters.io import REFERENCES_DIR, is_reference_path

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
    from jams_adapters.segments import read_segments

    intervals, _ = read_segments(path)
    return np.unique(intervals.ravel())


def _write_output(out_path: Path, result, seg_labels, analyzer) -> None:
    from .fileio import atomic_write_text, segments_csv

    out_path.parent.mkdir(parents=True, exist_ok=True)  # -o out_dir/ may not exist yet
    if out_path.suffix.lower() == ".csv":
        atomic_write_text(out_path, segments_csv(result.boundaries, seg_labels))
        return
    from jams_adapters.io import write_estimation_jams

    write_estimation_jams(out_path, result.boundaries, labels=seg_labels,
                          duration=result.duration, algo_id="learned_ssm",
                          config={"ssm_model": str(analyzer.meta.get("source", "model")),
                                  **{f"ssm_peak_{k}": v for k, v in
                                     analyzer.peaks.to_dict().items()}})


@main.command()
@click.argument("corpus_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Best model file (MODEL.pt); MODEL.state.pt and MODEL.log.jsonl go beside it.")
@click.option("--val", "val_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Validation corpus (MSAF layout).")
@click.option("--val-split", type=float, default=None,
              help="Fraction of CORPUS_DIR held out for validation (default 0.1 when no "
                   "--val/--val-ids).")
@click.option("--train-ids", type=click.Path(exists=True, dir_okay=False), default=None,
              help="File of track ids of CORPUS_DIR to train on (one per line).")
@click.option("--val-ids", type=click.Path(exists=True, dir_okay=False), default=None,
              help="File of track ids of CORPUS_DIR (or --val) to validate on.")
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="alpha * SSM-loss + (1 - alpha) * novelty-loss.")
@click.option("--attention-layers", type=click.IntRange(0), default=3, show_default=True)
@click.option("--freeze-kernels", is_flag=True, help="Keep the checkerboard kernels fixed.")
@click.option("--novelty-balanced", is_flag=True,
              help="Balance positives/negatives in the novelty BCE.")
@click.option("--epochs", type=click.IntRange(1), default=30, show_default=True)
@click.option("--patience", type=click.IntRange(1), default=5, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-4,
              show_default=True)
@click.option("--max-patches", type=click.IntRange(50), default=600, show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(1), default=50, show_default=True,
              help="Save the resume state every N tracks.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Feature cache (default: CORPUS_DIR/.ssm_cache).")
@click.option("--annotator", default=None,
              help="Reference annotation to learn: annotator name or index (default: first).")
@click.option("--namespace", default=None, help="JAMS namespace of the references.")
@click.option("--resume", is_flag=True, help="Continue from MODEL.state.pt.")
def train(corpus_dir, out, val_dir, val_split, train_ids, val_ids, alpha, attention_layers,
          freeze_kernels, novelty_balanced, epochs, patience, lr, max_patches, checkpoint_every,
          seed, device, cache_dir, annotator, namespace, resume) -> None:
    """Train a model on CORPUS_DIR (MSAF layout: audio/, references/*.jams)."""
    from training.corpus import find_tracks, read_id_list, split_tracks
    from training.trainer import TrainConfig, train as run_training

    from .config import ModelConfig

    try:
        # Ids of a split file whose song could not be converted or rendered are reported
        # (warning) and left out, not silently dropped.
        tracks = find_tracks(corpus_dir, read_id_list(train_ids) if train_ids else None,
                             allow_missing=True)
        if val_dir or val_ids:
            val_tracks = find_tracks(val_dir or corpus_dir,
                                     read_id_list(val_ids) if val_ids else None,
                                     allow_missing=True)
        else:
            tracks, val_tracks = split_tracks(tracks, val_split or 0.1, seed)
        overlap = {t.audio for t in tracks} & {t.audio for t in val_tracks}
        if overlap:
            raise click.UsageError(f"{len(overlap)} tracks are in both training and validation")
        if annotator is not None and annotator.isdigit():
            annotator = int(annotator)
        model_config = ModelConfig(attention_layers=attention_layers,
                                   freeze_kernels=freeze_kernels)
        config = TrainConfig(alpha=alpha, novelty_balanced=novelty_balanced, lr=lr,
                             epochs=epochs, patience=patience, max_patches=max_patches,
                             checkpoint_every=checkpoint_every, seed=seed,
                             namespace=namespace, annotator=annotator)
        click.echo(f"training on {len(tracks)} tracks, validating on {len(val_tracks)}",
                   err=True)
        result = run_training(tracks, val_tracks, out, model_config, config,
                              cache_dir=cache_dir or Path(corpus_dir) / ".ssm_cache",
                              device=device, resume=resume)
    except LearnedSSMError as exc:
        _fail(str(exc))
        sys.exit(2)
    for track_id, reason in result["skipped"].items():
        click.echo(f"skipped {track_id}: {reason}", err=True)
    best = result["best"] or {}
    click.echo(f"stopped ({result['stopped']}) after {result['epochs_run']} epochs; best "
               f"epoch {best.get('epoch')}: val HR0.5F {best.get('val_HR0.5F', float('nan')):.3f}"
               f" HR3F {best.get('val_HR3F', float('nan')):.3f} -> {out}")


@main.command("build-pop909")
@click.argument("pop909_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("structure_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--ids", "ids_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Render only these song ids (one per line).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--jobs", type=click.IntRange(1), default=2, show_default=True)
def build_pop909(pop909_dir, structure_dir, out_dir, ids_file, seed, jobs) -> None:
    """Render POP909 songs with FluidSynth into an MSAF corpus with JAMS references.

    Needs Debian's fluidsynth and fluid-soundfont-gm (apt-get install fluidsynth
    fluid-soundfont-gm).
    """
    from training.build_pop909 import build_pop909_corpus
    from training.corpus import read_id_list

    ids = read_id_list(ids_file) if ids_file else None
    try:
        summary = build_pop909_corpus(pop909_dir, structure_dir, out_dir, song_ids=ids,
                                      seed=seed, n_jobs=jobs)
    except (RuntimeError, LearnedSSMError) as exc:
        _fail(str(exc))
        sys.exit(2)
    for song, reason in summary.get("failed", {}).items():
        click.echo(f"failed {song}: {reason}", err=True)
    click.echo(f"rendered {summary.get('rendered')}, skipped {summary.get('skipped')}, "
               f"failed {len(summary.get('failed', {}))}", err=True)
    if summary.get("failed"):
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
