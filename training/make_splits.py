"""Write the fixed train/validation/test split of POP909 by song id.

The split is made once, by a seeded shuffle of every song id that has both a MIDI file and
structure annotations (819 songs in the shared data), cut 80 / 10 / 10 %, and committed as
``training/splits/{train,val,test}.txt`` (one id per line, sorted).  Splitting by song keeps
every rendering of a song on one side, so no song's material leaks across splits.

Use of the splits:

- ``train.txt``: model fitting only.
- ``val.txt``: early stopping, checkpoint and hyper-parameter selection.
- ``test.txt``: final evaluation only.  It is **never** used for training or for any model
  selection (checkpoints, thresholds, peak-picking settings); results on it are reported once.

The committed files are the reference; re-running this script with the defaults reproduces
them exactly (``--check`` verifies that without writing).

Usage::

    .venv/bin/python -m msaf_learned_ssm_training.make_splits \\
        /work/shared/data/pop909 /work/shared/data/pop909_structure
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from msaf_learned_ssm_jams.fileio import PathLike
from msaf_learned_ssm_jams.pop909 import pop909_song_ids

from .corpus import read_id_list, seeded_split


SPLITS_DIR = Path(__file__).resolve().parent / "splits"
DEFAULT_SEED = 909
DEFAULT_FRACTIONS: Tuple[float, float, float] = (0.8, 0.1, 0.1)
SPLIT_NAMES = ("train", "val", "test")


def available_song_ids(pop909_dir: PathLike, structure_dir: PathLike) -> List[str]:
    """Sorted ids with ``pop909_dir/NNN/NNN.mid`` and an annotation folder ``structure_dir/NNN``."""
    return pop909_song_ids(structure_dir, pop909_dir)


def split_ids(
    song_ids: Sequence[str],
    seed: int = DEFAULT_SEED,
    fractions: Tuple[float, float, float] = DEFAULT_FRACTIONS,
) -> Dict[str, List[str]]:
    """Shuffle ids with a seeded generator and cut them into train/val/test.

    Parameters
    ----------
    song_ids : sequence of str
        Ids to split (their order does not matter: they are sorted first).
    seed : int
        Seed of the shuffle.
    fractions : (float, float, float)
        Train, validation and test fractions, summing to 1.  Validation and test sizes are
        ``round(fraction * n)``; train takes the rest.

    Returns
    -------
    splits : dict
        ``{"train": [...], "val": [...], "test": [...]}``, each sorted, disjoint, and
        together covering ``song_ids``.
    """
    parts = seeded_split(sorted(set(song_ids)), fractions, seed)
    return dict(zip(SPLIT_NAMES, parts))


def write_splits(splits: Dict[str, List[str]], out_dir: PathLike = SPLITS_DIR) -> None:
    """Write ``out_dir/{train,val,test}.txt``, one id per line."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in SPLIT_NAMES:
        (out / f"{name}.txt").write_text("".join(f"{i}\n" for i in splits[name]))


def read_splits(splits_dir: PathLike = SPLITS_DIR) -> Dict[str, List[str]]:
    """Read ``splits_dir/{train,val,test}.txt`` into ``{"train": [...], ...}``."""
    d = Path(splits_dir)
    return {name: read_id_list(d / f"{name}.txt") for name in SPLIT_NAMES}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="Write the fixed POP909 train/val/test split.")
    parser.add_argument("pop909_dir")
    parser.add_argument("structure_dir")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out-dir", default=str(SPLITS_DIR))
    parser.add_argument("--check", action="store_true",
                        help="only verify that the files on disk equal the computed split")
    args = parser.parse_args(argv)

    splits = split_ids(available_song_ids(args.pop909_dir, args.structure_dir), seed=args.seed)
    if args.check:
        same = read_splits(args.out_dir) == splits
        print("splits match" if same else "splits DIFFER from the computed split")
        return 0 if same else 1
    write_splits(splits, args.out_dir)
    print(", ".join(f"{k}: {len(v)}" for k, v in splits.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
