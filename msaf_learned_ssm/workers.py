"""Worker processes for :meth:`Analyzer.analyze_many <msaf_learned_ssm.inference.Analyzer.analyze_many>`.

On a CPU, one process segmenting one file at a time with all cores leaves cores idle
while a file is decoded and its peaks are picked, and the encoder's small convolutions do
not scale linearly over threads. N processes, each analysing whole files with
``cores // N`` threads (:func:`~msaf_learned_ssm.parallel.worker_threads`), keep every core
busy. With a GPU the model stays in the calling process and the worker processes decode
and compute the patches (the CPU part), which keeps the GPU fed.

Details that matter to a user:

* Results come back in input order; a file that fails gives its error in its place and
  the others go on (a worker process that dies, killed or out of memory, fails the files
  it held, and a new process takes over the rest).
* Warnings raised in a worker (short audio, a truncated file) are re-issued in the calling
  process, so they reach its warning filters and handlers.
* Ctrl-C stops the run: the workers ignore SIGINT, the calling process cancels the queued
  files and ends the workers.
* On Linux the workers are forked from a fork server (``forkserver``), a clean process
  that has imported the package and nothing else; elsewhere they are spawned. Either way
  they never run the calling script again (its ``__main__`` is hidden from them while
  they start: what they run lives in this package), so a script needs no
  ``if __name__ == "__main__":`` guard. Not a plain fork
  of the calling process: once that process has run torch with several threads, its
  OpenMP thread pool does not survive a fork, and a forked worker's first multi-threaded
  operation waits forever. On a 16-core machine (torch 2.11) every forked worker hung in
  the encoder's first convolution, while the same workers from a fork server ran; on 2
  cores it never showed. The fork server starts once per calling process (about as long as
  importing torch); each worker then starts in milliseconds.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import warnings
from collections import deque
from contextlib import contextmanager
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterator, Optional, Sequence

from .errors import LearnedSSMError

__all__ = ["WorkerDiedError", "map_in_processes", "process_context"]

#: Files queued per worker ahead of the one it runs: keeps workers busy without holding
#: many decoded files in memory.
QUEUED_PER_WORKER = 2


class WorkerDiedError(LearnedSSMError):
    """A worker process ended while it held a file (killed, out of memory, a crash in a
    decoder)."""


#: What the fork server imports before it forks workers (not the calling script: an
#: unguarded script must not run again in the server).
FORKSERVER_PRELOAD = ["msaf_learned_ssm.inference"]


def process_context() -> multiprocessing.context.BaseContext:
    """Start method of the workers: a fork server on Linux (workers start fast and never
    inherit the calling process's thread pools; see the module's notes), spawn elsewhere
    (fork is unsafe on macOS)."""
    if sys.platform.startswith("linux"):
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(FORKSERVER_PRELOAD)
        return context
    return multiprocessing.get_context("spawn")


# Set in each worker process by _init_worker: what it runs on each item.
_TASK: Optional[Callable[[Any], Any]] = None


def _init_worker(task: Callable[[Any], Any], threads: int) -> None:
    """Worker start: its share of threads, its task; SIGINT left to the calling process."""
    import torch
    from threadpoolctl import threadpool_limits

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    threadpool_limits(threads)  # numpy's BLAS and OpenMP, for the life of the process
    global _TASK
    _TASK = task


def _run_task(item: Any) -> tuple[Any, list[tuple[str, type]]]:
    """Run the worker's task on ``item``; its result (or LearnedSSMError) and the warnings
    it raised, to re-issue in the calling process."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # the calling process's filters decide, not ours
        try:
            result = _TASK(item)
        except LearnedSSMError as exc:
            result = exc
    return result, [(str(w.message), w.category) for w in caught]


def _start_pool(task: Callable[[Any], Any], workers: int, threads: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=process_context(),
                               initializer=_init_worker, initargs=(task, threads))


@contextmanager
def _main_hidden() -> Iterator[None]:
    """Hide the calling script from the workers that start meanwhile.

    A spawned or fork-server worker re-runs the script that ``__main__`` names (its
    ``__spec__`` or ``__file__``) before it works, so that functions defined there can be
    unpickled; an unguarded script would then run its whole job again in every worker.
    Nothing the workers run is defined there, so they are not told about it.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {key: main.__dict__[key] for key in ("__file__", "__spec__")
             if key in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def _submit(pool: ProcessPoolExecutor, item: Any) -> Future:
    """Queue ``item``; a pool that a dying worker broke meanwhile gives a failed future,
    which :func:`map_in_processes` handles when the item's turn comes."""
    # Workers start inside submit (when the pool grows), in this thread.
    with _main_hidden():
        try:
            return pool.submit(_run_task, item)
        except BrokenProcessPool as exc:
            failed: Future = Future()
            failed.set_exception(exc)
            return failed


def _stop(pool: ProcessPoolExecutor, now: bool) -> None:
    """Shut the pool down; ``now``: cancel queued items and end running ones (Ctrl-C,
    an abandoned iteration) instead of letting them finish."""
    processes = list((getattr(pool, "_processes", None) or {}).values()) if now else []
    pool.shutdown(wait=not now, cancel_futures=True)
    for process in processes:  # no public way before Python 3.14 (terminate_workers)
        if process.is_alive():
            process.terminate()


def map_in_processes(task: Callable[[Any], Any], items: Sequence[Any], workers: int,
                     threads: int, describe: Callable[[Any], str] = str
                     ) -> Iterator[tuple[Any, Any]]:
    """``(item, task(item))`` for each item, in order, computed by ``workers`` processes.

    Parameters
    ----------
    task : callable
        Run in a worker on each item (picklable where workers are spawned). A
        :class:`LearnedSSMError` it raises is returned as that item's result; another
        exception propagates (a bug, not a bad file).
    items : sequence
    workers : int >= 1
        Worker processes.
    threads : int >= 1
        Torch and BLAS threads of each worker.
    describe : callable
        Names an item in the error of a worker that died.

    Yields
    ------
    (item, result or LearnedSSMError)
    """
    pool = _start_pool(task, workers, threads)
    pending: deque[tuple[Any, Future]] = deque()
    upcoming = iter(items)
    finished = False
    try:
        while True:
            while len(pending) < workers * (1 + QUEUED_PER_WORKER):
                item = next(upcoming, _END)
                if item is _END:
                    break
                pending.append((item, _submit(pool, item)))
            if not pending:
                break
            item, future = pending.popleft()
            try:
                result, caught = future.result()
            except BrokenProcessPool:
                # A worker died and took the pool down: the culprit may be any file in
                # flight. This one is tried again alone in a new pool and fails only if
                # it kills that one too; the others are queued again.
                pool = _restart(pool, task, workers, threads)
                try:
                    result, caught = _submit(pool, item).result()
                except BrokenProcessPool:
                    result, caught = WorkerDiedError(
                        f"{describe(item)}: the worker process analysing it ended "
                        "unexpectedly (killed, out of memory, or a crash in a decoder)"), []
                    pool = _restart(pool, task, workers, threads)
                pending = deque((queued, done if _succeeded(done) else _submit(pool, queued))
                                for queued, done in pending)
            for message, category in caught:
                warnings.warn(message, category, stacklevel=2)
            yield item, result
        finished = True
    finally:
        _stop(pool, now=not finished)


_END = object()


def _restart(pool: ProcessPoolExecutor, task: Callable[[Any], Any], workers: int,
             threads: int) -> ProcessPoolExecutor:
    _stop(pool, now=True)
    return _start_pool(task, workers, threads)


def _succeeded(future: Future) -> bool:
    """The future finished with a result (not broken, not cancelled)."""
    return future.done() and not future.cancelled() and future.exception() is None
