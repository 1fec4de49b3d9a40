"""Audio decoding: any file librosa/soundfile can read, to mono float32 at a fixed rate."""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import numpy as np

from msaf_learned_ssm_jams.fileio import PathLike
from .errors import AudioLoadError
from .parallel import resolve_threads



def _soundfile_reason(exc: Exception, path: Path) -> str:
    """libsndfile's reason without the path it repeats, nor its misleading guesses.

    libsndfile reports a file it cannot parse at all (a text file, a few bytes of an mp3)
    as "File does not exist or is not a regular file (possibly a pipe?)"; the file has
    already been checked to exist, so that text is replaced by what it really means.
    """
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = text.replace(f"Error opening {str(path)!r}: ", "").replace(f"{path}: ", "")
    if "does not exist or is not a regular file" in text:
        text = "unrecognised or damaged file"
    return text.rstrip(".")


def _audioread_reason(exc: Exception) -> str:
    """audioread's reason; its NoBackendError has an empty message."""
    if type(exc).__name__ == "NoBackendError":
        return "no backend (ffmpeg, GStreamer...) could decode it"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


#: Formats whose decoding runs in parallel parts (:func:`_read_soundfile`): CPU-bound
#: decoders with sample-exact seeking, so the parts join into the same samples.
PARALLEL_FORMATS = frozenset({"FLAC"})
#: Shortest file (samples) decoded in parallel parts: below it, threads cost more.
PARALLEL_MIN_FRAMES = 1 << 20


def _read_soundfile(path: Path, n_threads: Optional[int]) -> tuple[np.ndarray, int]:
    """``soundfile.read(path, dtype="float32", always_2d=True)``, in parallel parts for FLAC.

    A 200 s FLAC decodes in half the time in two threads (libFLAC releases the GIL and
    seeks to the exact sample); the samples are identical (``tests/test_front_end.py``).
    """
    import soundfile as sf

    with sf.SoundFile(str(path)) as f:
        n_frames, channels, sr, fmt = f.frames, f.channels, f.samplerate, f.format
        n_parts = min(resolve_threads(n_threads), 4)
        if fmt not in PARALLEL_FORMATS or n_frames < PARALLEL_MIN_FRAMES or n_parts < 2:
            return f.read(dtype="float32", always_2d=True), sr
    data = np.empty((n_frames, channels), dtype=np.float32)
    edges = np.linspace(0, n_frames, n_parts + 1).astype(int)

    def read_part(i: int) -> int:
        with sf.SoundFile(str(path)) as part:
            part.seek(int(edges[i]))
            out = data[edges[i]: edges[i + 1]]
            return len(part.read(len(out), dtype="float32", always_2d=True, out=out))

    with ThreadPoolExecutor(n_parts) as pool:
        n_read = sum(pool.map(read_part, range(n_parts)))
    if n_read != n_frames:  # a header that overstates the length: trust the decoder
        return sf.read(str(path), dtype="float32", always_2d=True)[0], sr
    return data, sr


def _decode(path: Path, n_threads: Optional[int] = None) -> tuple[np.ndarray, int]:
    """Decode ``path`` to float32 samples (channels, samples) and its native rate.

    Raises
    ------
    AudioLoadError
        Neither libsndfile nor audioread can decode the file. Decoders raise many types
        (``soundfile.LibsndfileError``, ``RuntimeError``, audioread's ``NoBackendError``,
        ``EOFError``...); all become one error that names the file.
    """
    try:
        data, sr = _read_soundfile(path, n_threads)
        return data.T, int(sr)
    except Exception as sf_error:  # libsndfile could not read it: try audioread (m4a...)
        import librosa

        try:
            with warnings.catch_warnings():
                # librosa warns that it falls back to audioread; the fallback is intended.
                warnings.simplefilter("ignore")
                y, sr = librosa.load(str(path), sr=None, mono=False, dtype=np.float32)
        except Exception as ar_error:
            raise AudioLoadError(
                f"{path}: cannot decode audio: not a supported audio format, or a corrupt "
                f"or truncated file (soundfile: {_soundfile_reason(sf_error, path)}; "
                f"audioread: {_audioread_reason(ar_error)})") from ar_error
        return np.atleast_2d(y), int(sr)


def load_audio(path: PathLike, sample_rate: int = 22050, n_threads: Optional[int] = None
               ) -> np.ndarray:
    """Load an audio file as a mono signal at ``sample_rate``.

    Multichannel audio is down-mixed by averaging the channels (as ``librosa.to_mono``),
    then resampled with soxr (librosa's default) when the file's rate differs.

    Parameters
    ----------
    path : str or os.PathLike
        Audio file (wav, flac, ogg, mp3, ...).
    sample_rate : int > 0
        Target rate in Hz.
    n_threads : int > 0 or None
        Threads for decoding long FLAC files (None: the cores this process may use).

    Returns
    -------
    y : np.ndarray, shape (n_samples,), float32
        The signal.

    Raises
    ------
    AudioLoadError
        If the file is missing, is a directory, cannot be decoded, holds no samples, or
        holds NaN or infinite samples.
    """
    path = Path(path)
    if not path.exists():
        raise AudioLoadError(f"{path}: no such file")
    if path.is_dir():
        raise AudioLoadError(f"{path}: is a directory, expected an audio file")
    if path.stat().st_size == 0:
        raise AudioLoadError(f"{path}: file is empty (0 bytes)")
    data, native_sr = _decode(path, n_threads)
    if data.size == 0:
        raise AudioLoadError(f"{path}: the file decodes to zero samples")
    n_bad = int(np.count_nonzero(~np.isfinite(data)))
    if n_bad:
        raise AudioLoadError(f"{path}: {n_bad} samples are NaN or infinite")
    y = data.mean(axis=0) if data.shape[0] > 1 else data[0]
    if native_sr != sample_rate:
        y = resample(y, native_sr, sample_rate)
    return np.ascontiguousarray(y, dtype=np.float32)


def resample(y: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """``librosa.resample(y, orig_sr=..., target_sr=...)`` (soxr, high quality), without
    importing librosa (its numba kernels cost seconds in a fresh process).

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)

    Returns
    -------
    np.ndarray, shape (ceil(n_samples * target_sr / orig_sr),), float32
    """
    import soxr

    n_out = int(np.ceil(y.shape[-1] * float(target_sr) / orig_sr))
    y_hat = soxr.resample(np.asarray(y, dtype=np.float32), orig_sr, target_sr, quality="soxr_hq")
    if y_hat.shape[-1] > n_out:  # as librosa.util.fix_length
        return y_hat[:n_out]
    return np.pad(y_hat, (0, n_out - y_hat.shape[-1]))
