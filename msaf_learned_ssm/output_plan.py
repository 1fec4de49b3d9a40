"""Where the ``segment`` command writes each file's results, decided before any work.

Rules (also in ``msaf-learned-ssm segment --help``):

* ``-o OUT.jams`` / ``-o OUT.csv`` names the file for one input; any other suffix is refused
  (``-o x.png`` would hold JSON, ``-o result.txt`` is not a folder name either).  Without a
  suffix (or an existing folder), ``-o`` is a folder: ``OUT/<audio stem>.<format>``.
* ``--plot OUT.png`` for one input, or a folder (``<audio stem>.png``); no other suffix.
* Two inputs that would write the same output file are an error before any work (e.g.
  ``a/song.wav`` and ``b/song.wav`` into one folder): nothing is silently overwritten.
* An existing CSV or PNG is refused unless ``overwrite``; an existing estimation JAMS is
  updated (its other annotations are kept; one of the same model and settings is replaced).
* Nothing is written into a ``references`` folder.
* Every output folder must be writable (it is made if needed): a read-only ``-o``, or one
  naming a plain file, fails before any file is analysed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from msaf_learned_ssm_jams.fileio import check_writable_dir
from msaf_learned_ssm_jams.io import REFERENCES_DIR, is_reference_path

from .errors import OutputError

DATA_SUFFIXES = (".jams", ".csv")

__all__ = ["OutputPlan", "plan_outputs"]


@dataclass(frozen=True)
class OutputPlan:
    """The files one input writes (None: not written)."""

    data: Optional[Path]
    plot: Optional[Path]


def _target(option: str, value: Optional[str], audio: str, n_files: int, suffixes: Sequence[str],
            default_suffix: str) -> Optional[Path]:
    if value is None:
        return None
    path = Path(value)
    suffix = path.suffix.lower()
    if suffix and not path.is_dir():
        if suffix not in suffixes:
            raise OutputError(f"{option} {value}: a file name must end in "
                              f"{' or '.join(suffixes)} (or give a folder, without a suffix)")
        if n_files > 1:
            raise OutputError(f"{option} {value}: with several audio files, give a folder")
        return path
    return path / (Path(audio).stem + default_suffix)


def plan_outputs(audio: Sequence[str], output: Optional[str], fmt: Optional[str], plot: Optional[str],
                 overwrite: bool = False) -> list[OutputPlan]:
    """The outputs of each input, checked together before any work.

    Parameters
    ----------
    audio : sequence of str
        Input files, in order.
    output : str or None
        ``-o``: a ``.jams``/``.csv`` file (one input) or a folder.
    fmt : {"jams", "csv"} or None
        Format of the files written into an ``output`` folder (None: jams); when given
        with an ``output`` file, its suffix must agree.
    plot : str or None
        ``--plot``: a ``.png`` file (one input) or a folder.
    overwrite : bool
        Allow replacing existing CSV and PNG files.

    Returns
    -------
    list of OutputPlan, one per input.

    Raises
    ------
    OutputError
        A bad suffix, two inputs sharing an output file, an existing CSV/PNG without
        ``overwrite``, an output inside a ``references`` folder, or an output folder that
        cannot be written (read-only, or a plain file).
    """
    if fmt is not None and output is not None and Path(output).suffix \
            and not Path(output).is_dir() and Path(output).suffix.lower() != f".{fmt}":
        raise OutputError(f"-o {output}: the name says {Path(output).suffix.lower()[1:]} "
                          f"but --format {fmt} was given: make them agree, or give a folder")
    fmt = fmt or "jams"
    plans = [OutputPlan(_target("-o", output, a, len(audio), DATA_SUFFIXES, f".{fmt}"),
                        _target("--plot", plot, a, len(audio), (".png",), ".png"))
             for a in audio]
    owners: dict[Path, str] = {}
    for src, plan in zip(audio, plans):
        for path in (plan.data, plan.plot):
            if path is None:
                continue
            key = path.resolve()
            if key in owners:
                raise OutputError(f"{owners[key]} and {src} would both write {path}: give the "
                                  "inputs different file names or run them separately")
            owners[key] = src
            if is_reference_path(path):
                raise OutputError(f"{path}: refusing to write outputs into a "
                                  f"'{REFERENCES_DIR}' folder (reference annotations are "
                                  "never modified); choose another -o")
            if path.suffix.lower() != ".jams" and path.exists() and not overwrite:
                raise OutputError(f"{path} exists: pass --overwrite to replace it")
    for folder in sorted({p.parent for plan in plans for p in (plan.data, plan.plot)
                          if p is not None}):
        check_writable_dir(folder, "output")
    return plans
