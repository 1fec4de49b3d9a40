"""Check the time alignment of POP909 phrase labels over all songs.

Usage::

    python bench/pop909_alignment.py [DATA_DIR]

``DATA_DIR`` holds ``pop909/`` and ``pop909_structure/`` (default: ``../shared/data``
relative to the repository root). Prints the pass rate of each check of
:func:`msaf_learned_ssm_jams.pop909.check_pop909_alignment` (a song passes a check when both
annotators do), the overall rate, how the origin was found, and every failing song with
its reasons. Exit status 0 (it reports; it does not judge).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from msaf_learned_ssm_jams.pop909 import ANNOTATORS, check_pop909_alignment, pop909_song_ids  # noqa: E402

CHECKS = ("downbeats", "start", "end", "bar_count")


def main(argv: list[str]) -> int:
    data = Path(argv[1]) if len(argv) > 1 else REPO.parent / "shared" / "data"
    pop909_dir, structure_dir = data / "pop909", data / "pop909_structure"
    if not structure_dir.is_dir() or not pop909_dir.is_dir():
        print(f"no pop909/ and pop909_structure/ under {data}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    results = [check_pop909_alignment(s, pop909_dir, structure_dir) for s in pop909_song_ids(structure_dir)]
    n = len(results)
    passed = Counter()
    methods = Counter(r.get("origin_method", "unreadable") for r in results)
    for r in results:
        for c in CHECKS:
            passed[c] += all(r.get(a, {}).get("checks", {}).get(c, False) for a in ANNOTATORS)
        passed["overall"] += r["ok"]
    print(f"POP909 alignment check: {n} songs under {structure_dir} ({time.perf_counter() - t0:.1f} s)")
    print(f"{'check':<12}{'pass':>6}{'rate':>9}")
    for c in (*CHECKS, "overall"):
        print(f"{c:<12}{passed[c]:>6}{passed[c] / n:>9.1%}")
    print("origin found by: " + ", ".join(f"{k} {v}" for k, v in methods.most_common()))
    failing = [r for r in results if not r["ok"]]
    print(f"\n{len(failing)} failing songs:")
    for r in failing:
        print(f"{r['song_id']}: " + "; ".join(r["reasons"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
