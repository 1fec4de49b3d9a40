"""Atomic file writing: a temporary file in the same folder, then an atomic rename.

The one atomic writer of every package of the project (text, JAMS, checkpoints, caches,
audio, plots).  Readers see the old file or the new one, never a partial one, even if the
writer is killed.  A new file gets the usual permissions (0666 minus the umask), a replaced
file keeps its own (a 0600 result stays 0600).  The temporary file is named
``.NAME.PID.XXXX.tmp``; one left behind by a killed writer (its process gone) is removed by
the next write to the same file.  A NAME too long for that (file names hold at most 255
bytes) is shortened in hidden names, keeping a digest of it (:func:`hidden_sibling`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Iterator, Union

PathLike = Union[str, os.PathLike]

#: Names longer than this (bytes) are shortened in hidden sibling names: the temporary file
#: ``.NAME.PID.XXXXXXXX.tmp`` adds up to 22 bytes to NAME, and file names hold 255.
_LONG_NAME = 200


def _fit(name: str) -> str:
    """``name``, or for a name over :data:`_LONG_NAME` bytes its first 180 bytes, ``~`` and
    10 hex digits of its SHA-256 (two long names stay apart)."""
    raw = os.fsencode(name)
    if len(raw) <= _LONG_NAME:
        return name
    head = raw[:180].decode("utf-8", "ignore")
    return f"{head}~{hashlib.sha256(raw).hexdigest()[:10]}"


def hidden_sibling(path: PathLike, suffix: str) -> Path:
    """The hidden file ``.NAME<suffix>`` beside ``path`` (a lock, a temporary file),
    its name shortened when ``path``'s own name is long (see :func:`_fit`)."""
    path = Path(path)
    return path.with_name(f".{_fit(path.name)}{suffix}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def _remove_stale_temporaries(path: Path) -> None:
    """Remove ``.NAME.PID.XXXX.tmp`` files beside ``path`` whose writer process is gone."""
    prefix = hidden_sibling(path, ".").name
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def _commit_new(tmp: str, path: Path) -> None:
    """Move ``tmp`` to ``path`` only if ``path`` does not exist (FileExistsError if it does)."""
    try:
        # A hard link fails if the destination exists, even one that appeared while
        # writing: no check-then-write race.
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:
        # File systems without hard links: fall back to check-then-replace.
        if path.exists():
            raise FileExistsError(f"{path}: file exists") from None
        os.replace(tmp, path)
    else:
        os.unlink(tmp)


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "wb", overwrite: bool = True) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it becomes ``path`` atomically.

    On any error (or interruption) the temporary file is removed and ``path`` is untouched.

    Parameters
    ----------
    path : path
        Final file.
    mode : str
        ``"wb"`` or ``"w"`` (text, UTF-8).
    overwrite : bool
        Replace an existing ``path``; if False, raise FileExistsError when ``path`` exists
        at the moment of the commit (the new content is then discarded).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=hidden_sibling(path, f".{os.getpid()}.").name,
                               suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        try:
            mode_bits = stat.S_IMODE(os.stat(path).st_mode)  # a replaced file keeps its mode
        except OSError:
            mode_bits = 0o666 & ~_umask()
        os.chmod(tmp, mode_bits)
        if overwrite:
            os.replace(tmp, path)
        else:
            _commit_new(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def file_lock(path: PathLike, blocking: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (the hidden file ``.NAME.lock`` beside it); the
    lock file is removed on release, so none is left beside the outputs.

    Removing a lock file is safe here: the holder unlinks it while still holding the lock,
    and a process that took the lock on a file since unlinked (or replaced) sees that its
    descriptor no longer names ``.NAME.lock`` and takes the lock again on the new file.

    Raises
    ------
    BlockingIOError
        ``blocking`` is False and another process holds the lock.
    """
    lock_path = hidden_sibling(path, ".lock")
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: filelock's own lock
        from filelock import FileLock, Timeout
        lock = FileLock(str(lock_path), timeout=-1 if blocking else 0)
        try:
            lock.acquire()
        except Timeout:
            raise BlockingIOError(f"{lock_path}: locked by another process") from None
        try:
            yield
        finally:
            lock.release()
        return
    flags = fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB)
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, flags)
            current = os.stat(lock_path)
        except FileNotFoundError:  # unlinked by its last holder: lock the new one
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise
        if os.path.samestat(current, os.fstat(fd)):
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        os.close(fd)  # releases the lock


def check_writable_dir(folder: PathLike, what: str = "output") -> Path:
    """Make ``folder`` if needed and check that files can be created in it.

    For a check *before* long work (a training run, a batch), so that an unwritable output
    fails in a second with a clear message instead of after an hour with a traceback.

    Raises
    ------
    OutputError
        Naming the folder and the reason (e.g. read-only file system, permission denied).
    """
    from .errors import OutputError

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: cannot write the {what} there (a file, not a folder)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(f"{folder}: cannot write the {what} there ({reason})") from None
    return folder


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "w") as handle:
        handle.write(text)
