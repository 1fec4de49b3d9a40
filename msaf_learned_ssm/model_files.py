"""Which model file a name means, and how an output names the model that made it.

Models shipped in the package (``msaf_learned_ssm/models/``) are selected by name in
``ssm_model`` (MSAF) and ``--model`` (command line):

* ``author-nbatt1``, ``author-nbatt3``: the published SSM-Net checkpoints of G. Peeters
  (ISMIR 2023), 1 and 3 self-attention layers, trained on real recordings (Harmonix,
  Isophonics), LGPL-3.0 (``LICENSE.author-models``), converted to this package's file
  format with identical weights;
* ``pop909-band``: trained by this project on band renders of POP909 (MIT), the default
  until real recordings showed it below ``author-nbatt3``; ``pop909-piano``: its
  predecessor, trained on piano renders (MIT). See ``MODEL_CARD.md``.
* ``nbatt3-teach``: ``author-nbatt3`` fine-tuned on band renders and, through the teacher
  loss, on unlabelled real music (LGPL-3.0, derived from the author's weights): a candidate.
* ``nbatt3-decor-teach``: the same recipe on band renders whose section cues are
  decorrelated from the structure (no groove/fill/crash shortcut): a candidate.
* ``nbatt3-distill``: ``author-nbatt3`` pulled toward the mean of both author models on
  unlabelled real music for 90 % of its training steps (the author ensemble distilled into
  one network), 10 % on decorrelated-cue renders (LGPL-3.0): a candidate.
* ``scratch-decor``, ``scratch-decor-teach``: trained here from scratch on band renders
  whose section cues are decorrelated from the structure, the second also on unlabelled
  real music through the teacher loss (MIT): candidates (d) and (c).
* ``author-ensemble``: ``author-nbatt1`` and ``author-nbatt3`` as one model (mean SSM,
  mean novelty; ``msaf-learned-ssm ensemble``), LGPL-3.0: a candidate.
* ``default``: an alias of :data:`DEFAULT_MODEL`, the model that scored best on real
  recordings (``author-nbatt3``); outputs name the model it stands for.

Anything else is a path to a model file.  Each file carries its own peak-picking settings
(``peaks``); outputs record the model's name and the SHA-256 of its file, so two models never
pass for one another.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Union

from msaf_learned_ssm_jams.fileio import PathLike


MODELS_DIR = Path(__file__).resolve().parent / "models"

#: Name -> file in :data:`MODELS_DIR`.
NAMED_MODELS = {
    "author-nbatt1": "author-nbatt1.pt",
    "author-nbatt3": "author-nbatt3.pt",
    "pop909-band": "pop909-band.pt",
    "pop909-piano": "pop909-piano.pt",
    "nbatt3-teach": "nbatt3-teach.pt",
    "nbatt3-decor-teach": "nbatt3-decor-teach.pt",
    "nbatt3-distill": "nbatt3-distill.pt",
    "author-ensemble": "author-ensemble.pt",
    "scratch-decor": "scratch-decor.pt",
    "scratch-decor-teach": "scratch-decor-teach.pt",
}

#: The model ``"default"`` (and no model named) stands for. Real band recordings scored
#: it above every model trained here (MODEL_CARD.md); it changes only when a candidate beats
#: it there, never on render scores alone.
DEFAULT_MODEL = "author-nbatt3"

__all__ = ["MODELS_DIR", "NAMED_MODELS", "DEFAULT_MODEL", "resolve_model", "model_name",
           "file_sha256"]


def resolve_model(model: Union[PathLike, None]) -> Path:
    """The file of a named model (None and ``"default"`` mean :data:`DEFAULT_MODEL`), or
    ``model`` as a path."""
    if model is None or model == "default":
        model = DEFAULT_MODEL
    if isinstance(model, str) and model in NAMED_MODELS:
        return MODELS_DIR / NAMED_MODELS[model]
    return Path(model)


def model_name(path: PathLike) -> str:
    """The name of a shipped model file, else the file's name (``runs/x/model.pt`` -> ``model.pt``)."""
    path = Path(path)
    for name, file in NAMED_MODELS.items():
        if path.resolve() == (MODELS_DIR / file).resolve():
            return name
    return path.name


def file_sha256(path: PathLike, length: int = 16) -> str:
    """The first ``length`` hex digits of the SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]
