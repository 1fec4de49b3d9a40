"""How many threads the CPU work on one track (decoding, STFT) may use."""

from __future__ import annotations

import os
from typing import Optional


def default_threads() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def resolve_threads(n_threads: Optional[int]) -> int:
    """``n_threads``, or :func:`default_threads` for None; at least 1."""
    return max(1, int(n_threads) if n_threads is not None else default_threads())
