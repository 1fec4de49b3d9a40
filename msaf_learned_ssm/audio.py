"""Audio decoding: any file librosa/soundfile can read, to mono float32 at a fixed rate."""

from __future__ import annotations

import errno
import os
import re
import stat
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Union

import numpy as np

from msaf_learned_ssm_jams.fileio import PathLike
from .errors import AudioLoadError, ConfigError
from .parallel import resolve_threads

#: Highest sample rate accepted for a signal given as an array (Hz).
MAX_SAMPLE_RATE = 768000



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


class TruncatedAudioWarning(UserWarning):
    """The file holds fewer samples than its header says (a cut-off download or copy)."""


def _warn_if_truncated(path: Path, info: str, n_frames: int, sr: int) -> None:
    """Warn when libsndfile reports a data chunk larger than the file holds (it then reads
    what there is, silently)."""
    match = re.search(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", info, re.MULTILINE)
    if match is None:
        return
    stated, actual = int(match.group(1)), int(match.group(2))
    if stated > actual > 0:
        held = n_frames / sr
        warnings.warn(f"{path}: truncated file: its header announces {held * stated / actual:.1f} "
                      f"s of audio, it holds {held:.1f} s; analysing the {held:.1f} s",
                      TruncatedAudioWarning, stacklevel=2)


def _read_soundfile(path: Path, n_threads: Optional[int]) -> tuple[np.ndarray, int]:
    """``soundfile.read(path, dtype="float32", always_2d=True)``, in parallel parts for FLAC.

    A 200 s FLAC decodes in half the time in two threads (libFLAC releases the GIL and
    seeks to the exact sample); the samples are identical (``tests/test_front_end.py``).
    """
    import soundfile as sf

    with sf.SoundFile(str(path)) as f:
        n_frames, channels, sr, fmt = f.frames, f.channels, f.samplerate, f.format
        _warn_if_truncated(path, f.extra_info, n_frames, sr)
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


def as_path(path: Union[PathLike, bytes]) -> Path:
    """``path`` (str, bytes or os.PathLike) as a Path; ConfigError for anything else."""
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"an audio path must be a str, bytes or os.PathLike, got "
                          f"{type(path).__name__}")
    path = Path(os.fsdecode(os.fspath(path)))
    if not str(path) or str(path) == ".":
        raise ConfigError("an audio path must not be empty")
    return path


def check_sample_rate(sample_rate: object, what: str = "sample_rate") -> int:
    """``sample_rate`` as an int, or ConfigError unless it is a whole number of Hz in
    [1, :data:`MAX_SAMPLE_RATE`]."""
    if isinstance(sample_rate, (bool, np.bool_)) or not isinstance(
            sample_rate, (int, np.integer, float, np.floating)) \
            or not np.isfinite(sample_rate) or sample_rate != int(sample_rate) \
            or not 1 <= sample_rate <= MAX_SAMPLE_RATE:
        raise ConfigError(f"{what} must be a whole number of Hz in [1, {MAX_SAMPLE_RATE}], "
                          f"got {sample_rate!r}")
    return int(sample_rate)


def as_float_signal(y: object) -> np.ndarray:
    """Samples as float32 in [-1, 1): integer PCM is scaled as soundfile reads it (int16
    by 1/32768, unsigned around its midpoint); ConfigError for other kinds (bool,
    complex, text...)."""
    y = np.asarray(y)
    if y.dtype.kind == "i":
        return (y.astype(np.float64) / 2.0 ** (8 * y.dtype.itemsize - 1)).astype(np.float32)
    if y.dtype.kind == "u":
        half = 2.0 ** (8 * y.dtype.itemsize - 1)
        return ((y.astype(np.float64) - half) / half).astype(np.float32)
    if y.dtype.kind != "f":
        raise ConfigError(f"audio must be an array of float or integer PCM samples, got "
                          f"dtype {y.dtype}")
    return y.astype(np.float32, copy=False)


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def check_audio_file(path: Path) -> None:
    """AudioLoadError saying what ``path`` is when it cannot be an audio file: missing, a
    broken symbolic link or a loop of them, unreadable, a directory, a FIFO or device
    (never read: it may never end), or empty."""
    try:
        st = path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            reason = "symbolic link loop (too many levels of symbolic links)"
        elif exc.errno == errno.ENOENT:
            reason = "broken symbolic link" if path.is_symlink() else "no such file"
        else:
            reason = f"cannot read the file ({exc.strerror or type(exc).__name__})"
        raise AudioLoadError(f"{path}: {reason}") from None
    if stat.S_ISDIR(st.st_mode):
        raise AudioLoadError(f"{path}: is a directory, expected an audio file")
    if not stat.S_ISREG(st.st_mode):
        raise AudioLoadError(f"{path}: is {_file_kind(st.st_mode)}, expected an audio file")
    if st.st_size == 0:
        raise AudioLoadError(f"{path}: file is empty (0 bytes)")


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
    path = as_path(path)
    check_audio_file(path)
    data, native_sr = _decode(path, n_threads)
    if data.size == 0:
        raise AudioLoadError(f"{path}: the file decodes to zero samples")
    n_bad = int(np.count_nonzero(~np.isfinite(data)))
    if n_bad:
        raise AudioLoadError(f"{path}: {n_bad} samples are NaN or infinite")
    y = to_mono(data)
    if native_sr != sample_rate:
        y = resample(y, native_sr, sample_rate)
    return np.ascontiguousarray(y, dtype=np.float32)


def to_mono(data: np.ndarray) -> np.ndarray:
    """The mean of the channels, ``data.mean(axis=0)`` bit for bit, 8x faster.

    Decoders give interleaved samples, so each channel row is strided; numpy's mean over
    that axis took 0.22 s of a 3-minute stereo MP3 (half its decoding time), a running
    sum over the rows takes 0.03 s. Both add the channels in order, then divide.

    Parameters
    ----------
    data : np.ndarray, shape (n_channels, n_samples), float32

    Returns
    -------
    np.ndarray, shape (n_samples,), float32
    """
    if data.shape[0] == 1:
        return data[0]
    y = data[0].copy()
    for channel in data[1:]:
        y += channel
    y /= data.shape[0]
    return y


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
