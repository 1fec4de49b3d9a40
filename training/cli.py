"""Training commands of ``msaf-learned-ssm``: ``train``, ``train-beats`` and ``build-pop909``.

They live next to the training code and are attached to the core's click group lazily (see
``msaf_learned_ssm.cli``), so segmenting never imports the training stack.  Every default is
read from the dataclasses that hold it (:class:`TrainConfig`, :class:`ModelConfig`,
:class:`AugmentConfig`), so the command line cannot drift from the API.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import click

from msaf_learned_ssm.config import ModelConfig
from msaf_learned_ssm.errors import ConfigError, LearnedSSMError

from .augment import AugmentConfig
from .trainer import MAX_LR, TrainConfig

_T, _M = TrainConfig, ModelConfig


def _say(message: str, err: bool = True) -> None:
    """A progress or summary line, from rank 0 only under torchrun (one line, not N)."""
    import os

    if os.environ.get("RANK", "0") == "0":
        click.echo(message, err=err)


def _fail(message: str, status: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(status)


def _fraction(ctx, param, value):
    """A validation fraction strictly between 0 and 1 (click's FloatRange lets NaN through)."""
    if value is None:
        return None
    if not (isinstance(value, float) and math.isfinite(value) and 0.0 < value < 1.0):
        raise click.BadParameter(f"{value} is not a fraction strictly between 0 and 1")
    return value


def _model_file(ctx, param, value):
    """``--out``: a file name (not empty, not a folder such as ``runs/new/``)."""
    from .trainer import check_model_path

    try:
        return value if value is None else check_model_path(value)
    except LearnedSSMError as exc:
        raise click.BadParameter(str(exc)) from None


def _learning_rate(ctx, param, value):
    """A finite learning rate in (0, MAX_LR] (click's FloatRange lets NaN through)."""
    top = getattr(param.type, "max", None) or MAX_LR
    if not (math.isfinite(value) and 0 < value <= top):
        raise click.BadParameter(f"{value} is not a learning rate in (0, {top:g}]")
    return value


#: Options of ``train`` that a resumed run keeps from its state: option -> (config, field).
#: Only ``--epochs`` may change (it extends a run); the tracks are checked by the trainer.
_KEPT_ON_RESUME = {
    "alpha": ("train", "alpha"), "novelty_balanced": ("train", "novelty_balanced"),
    "patience": ("train", "patience"), "lr": ("train", "lr"),
    "max_patches": ("train", "max_patches"), "checkpoint_every": ("train", "checkpoint_every"),
    "seed": ("train", "seed"), "namespace": ("train", "namespace"),
    "annotator": ("train", "annotator"), "teacher_weight": ("train", "teacher_weight"),
    "unlabeled_share": ("train", "unlabeled_share"),
    "attention_layers": ("model", "attention_layers"),
    "freeze_kernels": ("model", "freeze_kernels"), "patch_grid": ("model", "patch_grid"),
}


def _option_value(option: str, model_config, config):
    """The value of ``--option`` in a run's configurations."""
    if option == "augment":
        return config.augment is not None
    if option == "augment_variants":
        return (config.augment or {}).get("variants")
    where, name = _KEPT_ON_RESUME[option]
    return getattr(model_config if where == "model" else config, name)


def _refuse_changed_options(ctx, out: str, model_config, config) -> None:
    """With --resume: options given on the command line (making ``model_config`` and
    ``config``) that differ from the saved run's are a ConfigError naming each (a resumed
    run is the same run; only --epochs may change)."""
    from .trainer import TrainState, run_paths

    explicit = [name for name in (*_KEPT_ON_RESUME, "augment", "augment_variants")
                if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
    if not explicit:
        return
    _, saved_model, saved = TrainState.read_configs(run_paths(out)[1])
    changed = [(name, _option_value(name, model_config, config),
                _option_value(name, saved_model, saved)) for name in explicit]
    changed = [(name, new, old) for name, new, old in changed
               if new != old and not (name == "augment_variants" and None in (new, old))]
    if changed:
        def show(name, value):
            flag = name.replace("_", "-")
            if isinstance(value, bool):
                return f"--{flag}" if value else f"(no --{flag})"
            return f"--{flag} {value}"

        raise ConfigError(
            f"{', '.join(show(n, v) for n, v, _ in changed)}: the run at {out} was started "
            f"with {', '.join(show(n, old) for n, _, old in changed)}, and a resumed run keeps "
            "its settings (only --epochs may change); start a new run (another --out, or "
            "--overwrite) to change them")


def _pick_tracks(corpus_dir, val_dir, val_split, train_ids, val_ids, seed):
    from .corpus import find_tracks, read_id_list, split_tracks

    # Ids of a split file whose song could not be converted or rendered are reported
    # (warning) and left out, not silently dropped.
    tracks = find_tracks(corpus_dir, read_id_list(train_ids) if train_ids else None,
                         allow_missing=True)
    if not tracks:
        raise LearnedSSMError(f"{corpus_dir}: no track has both audio (audio/) and a "
                              "reference (references/NAME.jams)")
    if val_dir or val_ids:
        val_tracks = find_tracks(val_dir or corpus_dir, read_id_list(val_ids) if val_ids else None,
                                 allow_missing=True)
    else:
        if len(tracks) < 2:
            raise LearnedSSMError(f"{corpus_dir}: {len(tracks)} track is too few to hold some "
                                  "out for validation; give a validation corpus (--val)")
        tracks, val_tracks = split_tracks(tracks, 0.1 if val_split is None else val_split, seed)
    overlap = {t.audio for t in tracks} & {t.audio for t in val_tracks}
    if overlap:
        raise click.UsageError(f"{len(overlap)} tracks are in both training and validation")
    return tracks, val_tracks


@click.command()
@click.argument("corpus_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), callback=_model_file,
              help="Best model file (MODEL.pt); MODEL.state.pt and MODEL.log.jsonl go beside it.")
@click.option("--val", "val_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Validation corpus (MSAF layout).")
@click.option("--val-split", type=float, default=None, callback=_fraction,
              help="Fraction of CORPUS_DIR held out for validation, in (0, 1) (default 0.1 "
                   "when no --val/--val-ids).")
@click.option("--train-ids", type=click.Path(exists=True, dir_okay=False), default=None,
              help="File of track ids of CORPUS_DIR to train on (one per line).")
@click.option("--val-ids", type=click.Path(exists=True, dir_okay=False), default=None,
              help="File of track ids of CORPUS_DIR (or --val) to validate on.")
@click.option("--alpha", type=click.FloatRange(0, 1), default=_T.alpha, show_default=True,
              help="alpha * SSM-loss + (1 - alpha) * novelty-loss.")
@click.option("--attention-layers", type=click.IntRange(0, 12), default=_M.attention_layers,
              show_default=True)
@click.option("--freeze-kernels", is_flag=True, help="Keep the checkerboard kernels fixed.")
@click.option("--novelty-balanced", is_flag=True,
              help="Balance positives/negatives in the novelty BCE.")
@click.option("--epochs", type=click.IntRange(1), default=_T.epochs, show_default=True,
              help="Epochs in all; with --resume, a larger number extends a finished run.")
@click.option("--patience", type=click.IntRange(1), default=_T.patience, show_default=True)
@click.option("--lr", type=float, default=_T.lr, show_default=True, callback=_learning_rate,
              help=f"Adam's learning rate, in (0, {MAX_LR:g}].")
@click.option("--max-patches", type=click.IntRange(50), default=_T.max_patches,
              show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(1), default=_T.checkpoint_every,
              show_default=True, help="Save the resume state every N tracks.")
@click.option("--augment/--no-augment", default=False, show_default=True,
              help="Waveform augmentation of the training tracks (gain, EQ, low-pass, noise, "
                   "pitch, tempo, MP3); never of validation.")
@click.option("--augment-variants", type=click.IntRange(1), default=AugmentConfig.variants,
              show_default=True, help="Augmented draws per track (cached); epoch e uses "
                                      "draw e mod N.")
@click.option("--init", "init", default=None, metavar="MODEL",
              help="Start from this model's weights and architecture (a shipped name such "
                   "as 'author-nbatt3' or 'pop909-band', or a file) instead of random ones: "
                   "fine-tuning.")
@click.option("--patch-grid", type=click.Choice(["frame", "beat"]), default="frame",
              show_default=True,
              help="Centre the patches every 0.46 s (frame) or on the package's estimated "
                   "beats (beat: the novelty kernels then count beats). Allowed with --init.")
@click.option("--teacher", "teachers", default=None, metavar="MODEL[,MODEL...]",
              help="Teacher models for the --unlabeled tracks (shipped names or files, comma "
                   "separated), e.g. author-nbatt1,author-nbatt3: the student's SSM and "
                   "novelty are pulled toward the teachers' mean there.")
@click.option("--unlabeled", "unlabeled_dir", type=click.Path(exists=True, file_okay=False),
              default=None, help="Corpus of audio without references (audio/, e.g. from "
                                 "build-unlabeled), trained against the --teacher models.")
@click.option("--unlabeled-ids", type=click.Path(exists=True, dir_okay=False), default=None,
              help="File of track ids of --unlabeled to use (e.g. its train_ids.txt, leaving "
                   "the held-out part for measurement). Default: every track.")
@click.option("--teacher-weight", type=click.FloatRange(0, 100), default=_T.teacher_weight,
              show_default=True, help="Weight of an unlabelled track's loss against a "
                                      "labelled one's.")
@click.option("--unlabeled-share", type=click.FloatRange(0, 0.95), default=_T.unlabeled_share,
              show_default=True, help="Share of each epoch's steps on unlabelled tracks.")
@click.option("--data-threads", type=click.IntRange(0), default=None,
              help="Threads that prepare the next tracks' augmented draws while the model "
                   "trains (default: with a GPU, the cores less one; on a CPU, the cores "
                   "torch leaves free). Reproducible and resumable either way.")
@click.option("--seed", type=int, default=_T.seed, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Feature cache (default: CORPUS_DIR/.ssm_cache, or the user cache folder "
                   "when the corpus is read-only).")
@click.option("--annotator", default=None,
              help="Reference annotation to learn: annotator name or index (default: first).")
@click.option("--namespace", default=None, help="JAMS namespace of the references.")
@click.option("--resume", is_flag=True,
              help="Continue from MODEL.state.pt: the same run, with its own settings and "
                   "tracks (options that differ from the run's are refused; --epochs may "
                   "extend it).")
@click.option("--allow-corpus-change", is_flag=True,
              help="With --resume: continue although the tracks (or their contents) differ "
                   "from those the run started with (a warning says what changed).")
@click.option("--overwrite", is_flag=True, help="Replace the files of an earlier run at --out.")
@click.pass_context
def train(ctx, corpus_dir, out, val_dir, val_split, train_ids, val_ids, alpha, attention_layers,
          freeze_kernels, novelty_balanced, epochs, patience, lr, max_patches, checkpoint_every,
          augment, augment_variants, init, patch_grid, teachers, unlabeled_dir, unlabeled_ids,
          teacher_weight, unlabeled_share, data_threads, seed, device, cache_dir,
          annotator, namespace, resume, allow_corpus_change, overwrite) -> None:
    """Train a model on CORPUS_DIR (MSAF layout: audio/, references/*.jams).

    \b
    On N GPUs (or N CPU processes), data-parallel:
      torchrun --nproc-per-node N -m msaf_learned_ssm.cli train CORPUS_DIR --out M.pt ...
    """
    import warnings

    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    if allow_corpus_change and not resume:
        raise click.UsageError("--allow-corpus-change goes with --resume")
    if (teachers is None) != (unlabeled_dir is None):
        raise click.UsageError("--teacher and --unlabeled go together")
    if unlabeled_ids is not None and unlabeled_dir is None:
        raise click.UsageError("--unlabeled-ids needs --unlabeled")
    if init is not None:
        if resume:
            raise click.UsageError("--init and --resume exclude each other (a resumed run "
                                   "continues from its own saved weights)")
        fixed = [f"--{name.replace('_', '-')}" for name in ("attention_layers", "freeze_kernels")
                 if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
        if fixed:
            raise click.UsageError(f"{', '.join(fixed)}: with --init the architecture is the "
                                   "initial model's")
    with warnings.catch_warnings():
        # One "warning: ..." line each (the default format shows a library's source line),
        # only for this command: the caller's warning settings are restored after it.
        warnings.simplefilter("default")
        warnings.showwarning = lambda message, *a, **k: click.echo(f"warning: {message}",
                                                                     err=True)
        result = _run_train(ctx, corpus_dir, out, val_dir, val_split, train_ids, val_ids,
                            alpha, attention_layers, freeze_kernels, novelty_balanced, epochs,
                            patience, lr, max_patches, checkpoint_every, augment,
                            augment_variants, init, patch_grid, data_threads, seed, device,
                            cache_dir, annotator, namespace, resume, allow_corpus_change,
                            overwrite, (teachers, unlabeled_dir, unlabeled_ids, teacher_weight,
                                        unlabeled_share))
    for track_id, reason in result.skipped.items():
        _say(f"skipped {track_id}: {reason}")
    best = result.best or {}
    written = f"-> {out}" if Path(out).is_file() else "(no model file written)"
    _say(f"stopped ({result.stopped}) after {result.epochs_run} epochs; best "
         f"epoch {best.get('epoch')}: val HR0.5F {best.get('val_HR0.5F', float('nan')):.3f}"
         f" HR3F {best.get('val_HR3F', float('nan')):.3f} {written}", err=False)


def _run_train(ctx, corpus_dir, out, val_dir, val_split, train_ids, val_ids, alpha,
               attention_layers, freeze_kernels, novelty_balanced, epochs, patience, lr,
               max_patches, checkpoint_every, augment, augment_variants, init, patch_grid,
               data_threads, seed, device, cache_dir, annotator, namespace, resume,
               allow_corpus_change, overwrite, teaching):
    """The train command's work; LearnedSSMError becomes one ``error:`` line (exit 2)."""
    from .corpus import default_cache_dir, find_unlabeled, read_id_list
    from .trainer import train as run_training

    teachers, unlabeled_dir, unlabeled_ids, teacher_weight, unlabeled_share = teaching
    try:
        tracks, val_tracks = _pick_tracks(corpus_dir, val_dir, val_split, train_ids, val_ids,
                                          seed)
        unlabeled = (find_unlabeled(unlabeled_dir, read_id_list(unlabeled_ids)
                                    if unlabeled_ids else None) if unlabeled_dir else [])
        names = [t.strip() for t in teachers.split(",") if t.strip()] if teachers else []
        if annotator is not None and annotator.isdigit():
            annotator = int(annotator)
        model_config = ModelConfig(attention_layers=attention_layers,
                                   freeze_kernels=freeze_kernels, patch_grid=patch_grid)
        config = TrainConfig(alpha=alpha, novelty_balanced=novelty_balanced, lr=lr,
                             epochs=epochs, patience=patience, max_patches=max_patches,
                             checkpoint_every=checkpoint_every, seed=seed,
                             namespace=namespace, annotator=annotator,
                             augment=(AugmentConfig(variants=augment_variants).to_dict()
                                      if augment else None),
                             teacher_weight=teacher_weight, unlabeled_share=unlabeled_share)
        if resume:
            _refuse_changed_options(ctx, out, model_config, config)
        given = ctx.get_parameter_source("epochs") == click.core.ParameterSource.COMMANDLINE
        _say(f"training on {len(tracks)} tracks"
             + (f" and {len(unlabeled)} unlabelled ones (teachers {', '.join(names)})"
                if unlabeled else "") + f", validating on {len(val_tracks)}")
        return run_training(tracks, val_tracks, out, model_config, config,
                            cache_dir=cache_dir or default_cache_dir(corpus_dir),
                            device=device, resume=resume, overwrite=overwrite,
                            epochs=epochs if (resume and given) else None,
                            data_threads=data_threads, init=init,
                            unlabeled_tracks=unlabeled, teachers=names,
                            allow_corpus_change=allow_corpus_change)
    except LearnedSSMError as exc:
        _fail(str(exc))


def _beat_defaults():
    from .beat_training import BeatTrainConfig
    return BeatTrainConfig()


def _beat_augment_levels() -> list:
    from .beat_training import AUGMENT_LEVELS
    return list(AUGMENT_LEVELS)


@click.command("train-beats")
@click.argument("corpus_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), callback=_model_file,
              help="Best tracker file (BEATS.pt); BEATS.state.pt and BEATS.log.jsonl go beside it.")
@click.option("--train-ids", type=click.Path(exists=True, dir_okay=False), default=None,
              help="File of track ids to train on (default: every track of CORPUS_DIR).")
@click.option("--val-ids", type=click.Path(exists=True, dir_okay=False), default=None,
              help="File of track ids to validate on.")
@click.option("--val-split", type=float, default=None, callback=_fraction,
              help="Fraction held out for validation when no --val-ids (default 0.1).")
@click.option("--epochs", type=click.IntRange(1), default=_beat_defaults().epochs,
              show_default=True)
@click.option("--patience", type=click.IntRange(1), default=_beat_defaults().patience,
              show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True, max=1),
              default=_beat_defaults().lr, show_default=True, callback=_learning_rate)
@click.option("--augment-variants", type=click.IntRange(0),
              default=_beat_defaults().augment_variants, show_default=True,
              help="Augmented versions of each training track besides the clean one.")
@click.option("--augment", "augment", type=click.Choice(_beat_augment_levels()),
              default=_beat_defaults().augment, show_default=True,
              help="light: gain, EQ, low-pass, noise, pitch, tempo +-8 %, MP3. heavy: also "
                   "tempo +-25 %, drums down or gone, reverb, compression, lo-fi; validation "
                   "then also scores one heavy draw of each validation track.")
@click.option("--init", "init", default=None, metavar="TRACKER",
              help="Start from this tracker file ('package': the shipped beats.pt); its "
                   "architecture is kept.")
@click.option("--seed", type=int, default=_beat_defaults().seed, show_default=True)
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Feature cache (default as for train).")
@click.option("--resume", is_flag=True, help="Continue from BEATS.state.pt.")
@click.option("--overwrite", is_flag=True, help="Replace the files of an earlier run at --out.")
def train_beats(corpus_dir, out, train_ids, val_ids, val_split, epochs, patience, lr,
                augment_variants, augment, init, seed, cache_dir, resume, overwrite) -> None:
    """Train the beat and downbeat tracker on CORPUS_DIR (references with ``beat``
    annotations: value = position in the bar, 1 = downbeat)."""
    from .beat_training import BeatTrainConfig, train_tracker
    from .corpus import default_cache_dir

    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    try:
        tracks, val_tracks = _pick_tracks(corpus_dir, None, val_split, train_ids, val_ids,
                                          seed)
        click.echo(f"training on {len(tracks)} tracks, validating on {len(val_tracks)}",
                   err=True)
        if init == "package":
            from msaf_learned_ssm.beats import DEFAULT_BEAT_MODEL
            init = str(DEFAULT_BEAT_MODEL)
        elif init is not None and not Path(init).is_file():
            raise LearnedSSMError(f"--init {init}: no such tracker file")
        config = BeatTrainConfig(epochs=epochs, patience=patience, lr=lr,
                                 augment_variants=augment_variants, augment=augment,
                                 init=init, seed=seed)
        result = train_tracker(tracks, val_tracks, out, config,
                               cache_dir=cache_dir or default_cache_dir(corpus_dir),
                               resume=resume, overwrite=overwrite)
    except LearnedSSMError as exc:
        _fail(str(exc))
    for track_id, reason in result["skipped"].items():
        click.echo(f"skipped {track_id}: {reason}", err=True)
    best = result["best"] or {}
    click.echo(f"{result['epochs_run']} epochs; best epoch {result['best_epoch']}: val beat F "
               f"{best.get('beat_F', float('nan')):.3f}, downbeat F "
               f"{best.get('downbeat_F', float('nan')):.3f} -> {out}")


@click.command("build-pop909")
@click.argument("pop909_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("structure_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--mode", type=click.Choice(["band", "piano"]), default="band", show_default=True,
              help="band: melody, bridge and piano with bass and drums, stems mixed; piano: "
                   "POP909's three tracks only (the first corpus of the project).")
@click.option("--cues", type=click.Choice(["labelled", "decorrelated"]), default=None,
              help="Band mode: section cues (groove changes, fills, crashes) on the annotated "
                   "structure (labelled, the default) or at bars drawn independently of it "
                   "(decorrelated: a diagnostic corpus).")
@click.option("--ids", "ids_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Render only these song ids (one per line).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--jobs", type=click.IntRange(1), default=2, show_default=True)
@click.option("--refresh-references", is_flag=True,
              help="Rewrite the JAMS of songs already rendered (audio kept).")
def build_pop909(pop909_dir, structure_dir, out_dir, mode, cues, ids_file, seed, jobs,
                 refresh_references) -> None:
    """Render POP909 songs with FluidSynth into an MSAF corpus with JAMS references.

    Resumable: songs already rendered with the same choices are skipped.  Needs Debian's
    fluidsynth and fluid-soundfont-gm (optionally timgm6mb-soundfont,
    musescore-general-soundfont, csound-soundfont).
    """
    from .build_pop909 import build_pop909_corpus
    from .corpus import read_id_list

    if cues is not None and mode != "band":
        _fail(f"--cues needs --mode band (got --mode {mode})")
    ids = read_id_list(ids_file) if ids_file else None
    try:
        summary = build_pop909_corpus(pop909_dir, structure_dir, out_dir, song_ids=ids,
                                      seed=seed, n_jobs=jobs, mode=mode,
                                      cues=cues or "labelled",
                                      refresh_references=refresh_references)
    except (RuntimeError, LearnedSSMError) as exc:
        _fail(str(exc))
    for song, reason in summary["failed"].items():
        click.echo(f"failed {song}: {reason}", err=True)
    click.echo(f"rendered {len(summary['rendered'])}, skipped {len(summary['skipped'])}, "
               f"refreshed {len(summary['refreshed'])}, failed {len(summary['failed'])} "
               f"(soundfonts: {', '.join(summary['soundfonts'])}; "
               f"fluidsynth {summary['fluidsynth_version']})", err=True)
    if summary["failed"]:
        sys.exit(1)


# Light (no torch at import): the defaults shown in --help come from the builder itself.
from .unlabeled import DEFAULT_PACKAGES, MIN_DURATION_S  # noqa: E402


@click.command("build-unlabeled")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--packages", default=",".join(DEFAULT_PACKAGES), show_default=True,
              help="Debian packages to build from, comma-separated.")
@click.option("--from-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of the packages' .deb files and/or trees extracted with "
                   "`dpkg-deb -x PKG.deb DIR/PKG`; nothing is downloaded.")
@click.option("--min-duration", type=click.FloatRange(min=0), default=MIN_DURATION_S,
              show_default=True, help="Shortest track kept (s).")
@click.option("--jobs", type=click.IntRange(1), default=1, show_default=True,
              help="Decoding processes.")
def build_unlabeled(out_dir, packages, from_dir, min_duration, jobs) -> None:
    """Decode Debian's DFSG-free game soundtracks into an unlabeled corpus (OUT_DIR/audio,
    manifest.csv, train_ids.txt, heldout_ids.txt).

    Packages come from --from-dir, the installed packages, else `apt-get download` (no root
    needed). Tracks whose licence is unknown or not DFSG-free, and packages outside Debian
    main, are skipped and listed. Resumable: tracks already decoded are skipped. Never commit
    OUT_DIR.
    """
    from .unlabeled import build_unlabeled_corpus

    try:
        summary = build_unlabeled_corpus(out_dir, packages.split(","), from_dir=from_dir,
                                         min_duration=min_duration, n_jobs=jobs)
    except LearnedSSMError as exc:
        _fail(str(exc))
    for package, reason in summary["refused"].items():
        click.echo(f"refused {package}: {reason}", err=True)
    for file, reason in summary["licence_skipped"].items():
        click.echo(f"skipped {file}: {reason}", err=True)
    for track, reason in summary["failed"].items():
        click.echo(f"failed {track}: {reason}", err=True)
    licences = ", ".join(f"{name} {n}" for name, n in summary["licences"].items())
    click.echo(f"{summary['tracks']} tracks, {summary['hours']:.2f} h ({len(summary['built'])} "
               f"built, {len(summary['skipped'])} already built); held out "
               f"{summary['heldout']} tracks, {summary['heldout_hours']:.2f} h; "
               f"{len(summary['too_short'])} shorter than {min_duration:g} s dropped, "
               f"{len(summary['licence_skipped'])} not free, {len(summary['failed'])} failed; "
               f"licences: {licences or 'none'} -> {out_dir}", err=True)
    if summary["failed"] or summary["refused"]:
        sys.exit(1)
