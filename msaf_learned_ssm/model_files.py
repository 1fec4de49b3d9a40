"""Which model file a name means, and how an output names the model that made it.

Models shipped in the package (``msaf_learned_ssm/models/``) are selected by name in
``ssm_model`` (MSAF) and ``--model`` (command line):

* ``default``: trained by this project on POP909 renders (MIT), see ``MODEL_CARD.md``;
* ``author-nbatt1``, ``author-nbatt3``: the published SSM-Net checkpoints of G. Peeters
  (ISMIR 2023), 1 and 3 self-attention layers, LGPL-3.0 (``LICENSE.author-models``),
  converted to this package's file format with identical weights.

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
    "default": "default.pt",
    "author-nbatt1": "author-nbatt1.pt",
    "author-nbatt3": "author-nbatt3.pt",
}

__all__ = ["MODELS_DIR", "NAMED_MODELS", "resolve_model", "model_name", "file_sha256"]


def resolve_model(model: Union[PathLike, None]) -> Path:
    """The file of a named model (None means ``"default"``), or ``model`` as a path."""
    if model is None:
        model = "default"
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
