"""How many cores, threads and worker processes the CPU work may use.

One rule for every way the package runs files in parallel (``analyze_many(workers=N)``,
``segment --workers``, Dask workers, MSAF's collection mode): each of N worker processes on
a host gets ``cores // N`` threads (:func:`worker_threads`), so that torch, BLAS and the STFT
of the processes together never ask for more threads than the host has cores.
"""

from __future__ import annotations

import os
from typing import Optional

#: Threads per worker process that :func:`default_workers` aims at on a CPU: one process
#: per core. Each process then keeps its core busy through the serial parts of a file
#: (decoding, resampling, peaks, labels) as well as the encoder. Measured with
#: ``bench/speed.py --collection`` on 12 three-minute MP3s: on 2 cores, 2 processes of 1
#: thread gave 1.41x the files per second of one 2-thread process (``bench/results/
#: speed.md``); on 16 cores (``bench/results/speed_gpu.md``), 16 processes of 1 thread,
#: 8 of 2 and 4 of 4 all gave 8.7 files/s (2.8x one 16-thread process), 2 of 8 gave 5.8:
#: a few threads or one per process are the same, so the rule stays the simplest.
THREADS_PER_WORKER = 1
#: Fewest files for which :func:`default_workers` starts worker processes. Starting them
#: costs seconds (the fork server imports torch, each worker receives the model): in a new
#: process on 2 cores, 12 three-minute MP3s took 9.0 s in one process and 11.8 s in two,
#: 24 took 17.0 s and 17.1 s (the break-even); the processes win from there on.
WORKERS_MIN_FILES = 32
#: Memory one worker process may need (bytes): its RSS on a 3-4 minute track is about
#: 0.5 GB, torch included (``bench/results/speed.md``); an hour-long file needs about 1.1 GB.
WORKER_MEMORY_BYTES = 1 << 30


def default_threads() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def resolve_threads(n_threads: Optional[int]) -> int:
    """``n_threads``, or :func:`default_threads` for None; at least 1."""
    return max(1, int(n_threads) if n_threads is not None else default_threads())


def worker_threads(workers: int, cores: Optional[int] = None) -> int:
    """Threads for each of ``workers`` processes sharing ``cores`` (default: this process's
    cores): ``cores // workers``, at least 1."""
    return max(1, resolve_threads(cores) // max(1, int(workers)))


def available_memory() -> Optional[int]:
    """Memory available to new processes (bytes; ``MemAvailable`` of ``/proc/meminfo``),
    None where the OS does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def memory_cap(workers: int, memory: Optional[int] = None) -> int:
    """``workers``, reduced to what the available memory holds (:data:`WORKER_MEMORY_BYTES`
    each; at least 1); unchanged where the OS does not say how much memory is available."""
    memory = available_memory() if memory is None else memory
    if memory is None:
        return workers
    return max(1, min(workers, int(memory // WORKER_MEMORY_BYTES)))


def default_workers(n_files: Optional[int] = None, cores: Optional[int] = None,
                    memory: Optional[int] = None) -> int:
    """Worker processes for a collection on a CPU.

    ``cores // THREADS_PER_WORKER``, no more than there are files nor than the available
    memory holds (:data:`WORKER_MEMORY_BYTES` each), at least 1; 1 for fewer than
    :data:`WORKERS_MIN_FILES` files (starting the processes would cost more than they
    save), and 1 in a daemonic process (a ``multiprocessing.Pool`` worker), which may not
    start processes.

    Parameters
    ----------
    n_files : int, optional
        Files to segment (None: not known).
    cores : int, optional
        Cores to use (default: :func:`default_threads`).
    memory : int, optional
        Bytes available (default: :func:`available_memory`).
    """
    import multiprocessing

    if multiprocessing.current_process().daemon:
        return 1  # a daemonic process (a multiprocessing.Pool worker) cannot have children
    if n_files is not None and n_files < WORKERS_MIN_FILES:
        return 1
    workers = memory_cap(resolve_threads(cores) // THREADS_PER_WORKER, memory)
    if n_files is not None:
        workers = min(workers, n_files)
    return max(1, int(workers))
