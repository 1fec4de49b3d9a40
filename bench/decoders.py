"""MP3 decoders side by side: is there a faster one than the package's (soundfile)?

Issue 24 asks for MP3 decoding that keeps a GPU fed, "with a faster decoder than the
current one, if one measures faster". This times, on the same files in one run, the
decoders a user could install from PyPI, each decoding whole files to float32 on one
thread: soundfile (libsndfile with mpg123, what :func:`msaf_learned_ssm.audio.load_audio`
uses), miniaudio (dr_mp3), pedalboard (JUCE) and PyAV (FFmpeg). Decoders that are not
installed are listed as such. Best of ``--repeat`` runs per file, summed over the files.

Usage::

    python bench/decoders.py .devdata/mp3/*.mp3 [--repeat 3] [--out bench/results/decoders.md]

The package needs none of the others; to compare them, install them beside it
(``pip install miniaudio pedalboard av``).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Callable, Optional

import numpy as np


def _soundfile(path: str) -> np.ndarray:
    import soundfile as sf

    return sf.read(path, dtype="float32", always_2d=True)[0].T


def _miniaudio(path: str) -> np.ndarray:
    import miniaudio

    decoded = miniaudio.decode_file(path, output_format=miniaudio.SampleFormat.FLOAT32)
    samples = np.frombuffer(decoded.samples, dtype=np.float32)
    return samples.reshape(-1, decoded.nchannels).T


def _pedalboard(path: str) -> np.ndarray:
    from pedalboard.io import AudioFile

    with AudioFile(path) as audio:
        return audio.read(audio.frames)


def _pyav(path: str) -> np.ndarray:
    import av

    with av.open(path) as container:
        return np.concatenate([frame.to_ndarray() for frame in container.decode(audio=0)],
                              axis=1)


#: name -> (module to import, decode function returning (channels, samples) float32).
DECODERS: dict[str, tuple[str, Callable[[str], np.ndarray]]] = {
    "soundfile (package)": ("soundfile", _soundfile),
    "miniaudio": ("miniaudio", _miniaudio),
    "pedalboard": ("pedalboard", _pedalboard),
    "PyAV": ("av", _pyav),
}


def version_of(module: str) -> Optional[str]:
    """The installed version of ``module``, None if it does not import."""
    try:
        imported = __import__(module)
    except ImportError:
        return None
    if module == "soundfile":
        return f"{imported.__version__} (libsndfile {imported.__libsndfile_version__})"
    return str(getattr(imported, "__version__", "?"))


def best_time(decode: Callable[[str], np.ndarray], path: str, repeat: int
              ) -> tuple[float, int]:
    """Fastest of ``repeat`` decodings of ``path`` (s), and the samples per channel."""
    best, n = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        n = decode(path).shape[1]
        best = min(best, time.perf_counter() - start)
    return best, n


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    import soundfile as sf

    infos = [sf.info(str(f)) for f in args.files]
    minutes = sum(info.duration for info in infos) / 60
    rows = []
    reference = None
    for name, (module, decode) in DECODERS.items():
        version = version_of(module)
        if version is None:
            rows.append(f"| {name} | not installed | | | |")
            continue
        seconds, lengths = 0.0, []
        for path in args.files:
            t, n = best_time(decode, str(path), args.repeat)
            seconds += t
            lengths.append(n)
        reference = reference or seconds
        same = sum(n == info.frames for n, info in zip(lengths, infos))
        rows.append(f"| {name} | {version} | {seconds / minutes:.3f} | "
                    f"{seconds / reference:.2f} | {same} of {len(args.files)} |")
        print(rows[-1], flush=True)
    lines = ["# MP3 decoders", "",
             f"{len(args.files)} files, {minutes:.1f} min of audio; one thread; best of "
             f"{args.repeat} per file. {datetime.now().isoformat(timespec='seconds')}, "
             f"{platform.processor() or platform.machine()}, Python "
             f"{platform.python_version()}.",
             "Command: `python bench/decoders.py " + " ".join(map(str, args.files[:2]))
             + (" ..." if len(args.files) > 2 else "") + f" --repeat {args.repeat}`", "",
             "| decoder | version | s per audio minute | time / soundfile's | "
             "same length as soundfile |", "|---|---|---:|---:|---:|", *rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        tmp = args.out.with_name(f".{args.out.name}.tmp")
        tmp.write_text(text)
        tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
