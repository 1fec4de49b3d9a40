"""Convert the author's published SSM-Net state_dicts into the package's named models.

Writes ``msaf_learned_ssm/models/author-nbatt{1,3}.pt``: the same weights (checked tensor by
tensor) in this package's file format, with the author's peak-picking settings (10 / 7 / 1.35)
and their provenance and licence (LGPL-3.0, ``LICENSE.author-models``).

Usage::

    python bench/convert_author_models.py [../shared/data/ssmnet_reference]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    import torch

    from msaf_learned_ssm.checkpoint import (convert_author_state_dict, model_from_checkpoint_data,
                                             read_checkpoint, save_model)
    from msaf_learned_ssm.config import PeakConfig
    from msaf_learned_ssm.model_files import MODELS_DIR

    argv = sys.argv[1:] if argv is None else argv
    src = Path(argv[0]) if argv else ROOT.parent / "shared" / "data" / "ssmnet_reference"
    for n in (1, 3):
        original = src / f"ssmnet_nbatt{n}_state_dict.pt"
        data = read_checkpoint(original)
        model, _ = model_from_checkpoint_data(data, str(original))
        out = MODELS_DIR / f"author-nbatt{n}.pt"
        save_model(model, out, name=f"author-nbatt{n}", peaks=PeakConfig().to_dict(),
                   license="LGPL-3.0 (see LICENSE.author-models)",
                   origin=("SSM-Net checkpoint published by Geoffroy Peeters with 'Self-"
                           "Similarity-Based and Novelty-based loss for music structure "
                           f"analysis' (ISMIR 2023), file ssmnet_nbatt{n}_state_dict.pt"),
                   trained_on="Harmonix Set and Isophonics (according to the paper)")
        converted = convert_author_state_dict(data)
        saved = read_checkpoint(out)["state_dict"]
        assert set(saved) == set(converted)
        assert all(torch.equal(saved[k], converted[k]) for k in saved), "weights changed"
        print(f"{original.name} -> {out.relative_to(ROOT)} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
