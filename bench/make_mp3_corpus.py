"""An MSAF-layout corpus of three-minute MP3s with references, made from rendered corpora.

The held-out real recordings are scored with ``bench/candidates.py`` as MP3s a user would
have; this makes a stand-in of the same shape to time that command on (issue 22, item 5):
each source track that has a reference is decoded, resampled to 44.1 kHz stereo, cut to
``--seconds`` (shorter tracks are kept whole), written as MP3 with soundfile (libsndfile's
LAME), and its JAMS trimmed to the same span with ``jams.JAMS.trim`` (segments crossing the
cut are clipped, later ones dropped). Nothing in the sources is modified; outputs are
written atomically and a file already made is reused.

Usage::

    python bench/make_mp3_corpus.py --from corpora/pop909_band --from corpora/pop909_band_decor \\
        --n 150 --out corpora/mp3_150
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Iterable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: Sample rate of the MP3s (Hz): what users' files have.
MP3_SAMPLE_RATE = 44100


def source_tracks(corpora: Iterable[Path]) -> list[tuple[str, Path, Path]]:
    """``(track id, audio, reference)`` of every track with a reference, first corpus
    first; an id already taken by an earlier corpus is skipped (renders of one song)."""
    seen: set[str] = set()
    tracks = []
    for corpus in corpora:
        for audio in sorted((corpus / "audio").glob("*")):
            reference = corpus / "references" / (audio.stem + ".jams")
            if audio.stem in seen or not reference.is_file():
                continue
            seen.add(audio.stem)
            tracks.append((audio.stem, audio, reference))
    return tracks


def trimmed_reference(reference: Path, seconds: float):
    """The JAMS of ``reference`` trimmed to ``[0, min(seconds, duration)]`` (a new object)."""
    import jams

    jam = jams.load(str(reference), validate=False)
    end = min(seconds, float(jam.file_metadata.duration))
    trimmed = jam.trim(0.0, end, strict=False)
    trimmed.file_metadata.duration = end
    return trimmed


def write_mp3(audio: Path, dest: Path, seconds: float) -> float:
    """Decode ``audio``, cut it to ``seconds`` and write it to ``dest`` as 44.1 kHz stereo
    MP3 (atomically). Returns the written duration (s)."""
    import soundfile as sf

    from msaf_learned_ssm.audio import resample

    y, sr = sf.read(audio, dtype="float32", always_2d=True)
    y = resample(y.mean(axis=1), sr, MP3_SAMPLE_RATE)[: int(seconds * MP3_SAMPLE_RATE)]
    tmp = dest.with_name(f".{dest.stem}.{os.getpid()}.tmp.mp3")
    sf.write(tmp, np.stack([y, y], axis=1) * 0.9, MP3_SAMPLE_RATE, format="MP3")
    os.replace(tmp, dest)
    return len(y) / MP3_SAMPLE_RATE


def main(argv=None) -> int:
    from tqdm import tqdm

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="sources", type=Path, action="append", required=True,
                        help="an MSAF-layout corpus with references (repeatable)")
    parser.add_argument("--n", type=int, default=150, help="number of tracks (default 150)")
    parser.add_argument("--seconds", type=float, default=180.0,
                        help="length of each MP3 (s, default 180)")
    parser.add_argument("--out", type=Path, required=True, help="output corpus folder")
    args = parser.parse_args(argv)
    if args.n < 1 or not args.seconds > 0:
        parser.error("--n must be >= 1 and --seconds > 0")
    tracks = source_tracks(args.sources)[: args.n]
    if len(tracks) < args.n:
        parser.error(f"only {len(tracks)} tracks with references in "
                     f"{', '.join(map(str, args.sources))}; --n asks for {args.n}")
    (args.out / "audio").mkdir(parents=True, exist_ok=True)
    (args.out / "references").mkdir(exist_ok=True)
    total = 0.0
    for track_id, audio, reference in tqdm(tracks, desc="mp3"):
        dest = args.out / "audio" / f"{track_id}.mp3"
        jams_dest = args.out / "references" / f"{track_id}.jams"
        if dest.is_file() and jams_dest.is_file():
            continue
        total += write_mp3(audio, dest, args.seconds)
        jam = trimmed_reference(reference, args.seconds)
        tmp = jams_dest.with_name(f".{jams_dest.stem}.{os.getpid()}.tmp.jams")
        jam.save(str(tmp), strict=False)
        os.replace(tmp, jams_dest)
    print(f"{len(tracks)} tracks in {args.out} ({total / 60:.1f} min of audio written now)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
