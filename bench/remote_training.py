"""Train on a lent GPU machine that holds none of the corpora: pack the features, unpack there.

A device machine receives at most 64 MiB, and the rendered corpora are gigabytes. Training
reads the model's input from the feature cache (:class:`~msaf_learned_ssm_training.corpus.
FeatureCache`), keyed by the audio file's content. So ``pack`` stores each track's cached
front-end values, quantised to 8 bits per value (``(hi - lo) / 510`` at most off, about 0.02
on the log-mel scale) and xz-compressed (about 160 kB per three-minute track), with its
reference JAMS; ``unpack`` rebuilds MSAF-layout corpora whose audio files are small stand-ins
(distinct bytes per track) and writes the values under the stand-ins' cache keys. Training
on the unpacked corpora with ``--cache-dir`` then reads every feature from the cache and
never decodes audio. Teachers' targets are computed there from the same values.

Not for ``--augment``: augmented draws need the waveform. Used for candidates (c) and (d)
of ``msaf_learned_ssm/models/MODEL_CARD.md``.

Usage::

    python bench/remote_training.py pack .gpupack/pack.npz.xz \\
        --labelled corpora/pop909_band_decor:runs/decor_train_ids.txt \\
        --labelled corpora/pop909_band_decor:training/splits/val.txt=decor_val \\
        --unlabeled corpora/unlabeled:runs/unlabeled_train_short.txt --cache-dir cache/train
    # there:
    python bench/remote_training.py unpack .gpupack/pack.npz.xz /tmp/packed
    # -> /tmp/packed/<corpus>/{audio,references}, /tmp/packed/cache
"""

from __future__ import annotations

import argparse
import io
import json
import lzma
import sys
import zlib
from pathlib import Path

import numpy as np
from tqdm import tqdm


STANDIN_SR = 22050
FORMAT = 1


def quantise(steps: np.ndarray) -> tuple[np.ndarray, float, float]:
    """8-bit codes (n_mels, n) of ``steps`` and the range (lo, hi) they span."""
    lo, hi = float(steps.min()), float(steps.max())
    scale = (hi - lo) or 1.0
    codes = np.round((steps - lo) / scale * 255.0)
    return codes.astype(np.uint8), lo, hi


def dequantise(codes: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """float32 values (n_mels, n) of 8-bit ``codes`` spanning (lo, hi)."""
    scale = (hi - lo) or 1.0
    return (codes.astype(np.float32) * np.float32(scale / 255.0) + np.float32(lo))


def _corpus_spec(text: str) -> tuple[Path, list[str] | None, str]:
    """``CORPUS[:IDS][=NAME]``: folder, track ids (None: all) and the unpacked folder's name
    (default: the corpus folder's)."""
    text, _, name = text.partition("=")
    folder, _, ids = text.partition(":")
    return Path(folder), ([line.strip() for line in Path(ids).read_text().splitlines()
                           if line.strip()] if ids else None), name or Path(folder).name


def pack(out: Path, labelled: list[str], unlabeled: list[str], cache_dir: Path) -> None:
    """Write the pack of the listed corpora's tracks (features computed where not cached)."""
    from msaf_learned_ssm.config import ModelConfig
    from msaf_learned_ssm_training.corpus import FeatureCache, find_tracks, find_unlabeled

    cache = FeatureCache(cache_dir, ModelConfig())
    arrays: dict[str, np.ndarray] = {}
    manifest = {"format": FORMAT, "settings_key": cache._settings_key, "tracks": []}
    tracks = []
    for spec in labelled:
        folder, ids, name = _corpus_spec(spec)
        tracks += [("labelled", name, t) for t in find_tracks(folder, ids)]
    for spec in unlabeled:
        folder, ids, name = _corpus_spec(spec)
        tracks += [("unlabeled", name, t) for t in find_unlabeled(folder, ids)]
    for i, (kind, corpus, track) in enumerate(tqdm(tracks, desc="packing")):
        steps, times, duration = cache.steps(track.audio)
        codes, lo, hi = quantise(steps)
        arrays[f"codes_{i}"] = codes
        arrays[f"times_{i}"] = times
        entry = {"kind": kind, "corpus": corpus, "id": track.track_id, "lo": lo, "hi": hi,
                 "duration": float(duration)}
        if kind == "labelled":
            arrays[f"jams_{i}"] = np.frombuffer(Path(track.reference).read_bytes(),
                                                dtype=np.uint8)
        manifest["tracks"].append(entry)
    arrays["manifest"] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(lzma.compress(buffer.getvalue(), preset=6))
    tmp.replace(out)
    print(f"{out}: {len(tracks)} tracks, {out.stat().st_size / 2**20:.1f} MiB")


def standin_audio(corpus: str, track_id: str) -> np.ndarray:
    """A short, distinct waveform per track (its bytes key the feature cache)."""
    seed = zlib.crc32(f"{corpus}/{track_id}".encode())
    return np.random.default_rng(seed).uniform(-0.01, 0.01, STANDIN_SR // 20).astype(np.float32)


def unpack(pack_path: Path, dest: Path) -> None:
    """Rebuild the corpora (stand-in audio, references) and their feature cache in ``dest``."""
    import soundfile as sf

    from msaf_learned_ssm.config import ModelConfig
    from msaf_learned_ssm_training.corpus import FeatureCache

    with np.load(io.BytesIO(lzma.decompress(pack_path.read_bytes()))) as data:
        arrays = {key: data[key] for key in data.files}
    manifest = json.loads(arrays["manifest"].tobytes())
    if manifest.get("format") != FORMAT:
        raise SystemExit(f"{pack_path}: pack format {manifest.get('format')}, expected {FORMAT}")
    cache = FeatureCache(dest / "cache", ModelConfig())
    if cache._settings_key != manifest["settings_key"]:
        raise SystemExit(f"{pack_path}: packed with front-end {manifest['settings_key']}, "
                         f"this code's is {cache._settings_key}")
    for i, entry in enumerate(tqdm(manifest["tracks"], desc="unpacking")):
        root = dest / entry["corpus"]
        audio = root / "audio" / f"{entry['id']}.wav"
        audio.parent.mkdir(parents=True, exist_ok=True)
        sf.write(audio, standin_audio(entry["corpus"], entry["id"]), STANDIN_SR, subtype="FLOAT")
        if entry["kind"] == "labelled":
            ref = root / "references" / f"{entry['id']}.jams"
            ref.parent.mkdir(parents=True, exist_ok=True)
            ref.write_bytes(arrays[f"jams_{i}"].tobytes())
        steps = dequantise(arrays[f"codes_{i}"], entry["lo"], entry["hi"])
        cache._write(cache.path_for(audio), steps, arrays[f"times_{i}"], entry["duration"])
    print(f"{dest}: {len(manifest['tracks'])} tracks unpacked")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="pack features and references")
    p.add_argument("out", type=Path)
    p.add_argument("--labelled", action="append", default=[], metavar="CORPUS[:IDS][=NAME]")
    p.add_argument("--unlabeled", action="append", default=[], metavar="CORPUS[:IDS][=NAME]")
    p.add_argument("--cache-dir", type=Path, required=True)
    u = sub.add_parser("unpack", help="rebuild stand-in corpora and their feature cache")
    u.add_argument("pack", type=Path)
    u.add_argument("dest", type=Path)
    args = parser.parse_args(argv)
    if args.command == "pack":
        pack(args.out, args.labelled, args.unlabeled, args.cache_dir)
    else:
        unpack(args.pack, args.dest)


if __name__ == "__main__":
    main()
