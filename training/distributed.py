"""Distributed data-parallel training under ``torchrun``.

``torchrun --nproc-per-node N -m msaf_learned_ssm.cli train CORPUS --out MODEL.pt ...``
starts N copies of the ``train`` command; each finds its rank in the environment that
torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``). The
trainer then:

* wraps the model in :class:`torch.nn.parallel.DistributedDataParallel` (gradients
  averaged across ranks after each backward pass);
* gives each rank every N-th track of the epoch's shuffled order (:func:`shard`, the rule
  of :class:`torch.utils.data.distributed.DistributedSampler`), so one step trains on N
  tracks at once;
* lets rank 0 alone write the feature cache first (the others then read it), validate,
  and write the best model, the resume state and the log; the others receive the
  validation scores, so every rank takes the same early-stopping decision.

Backend: ``nccl`` when the ranks run on CUDA GPUs (rank ``LOCAL_RANK`` uses
``cuda:LOCAL_RANK``), ``gloo`` on CPU. A run killed on any rank stops all of them
(torchrun's default); ``--resume`` continues from the last state rank 0 saved.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in a distributed run."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """Whether the environment describes a multi-process run (``WORLD_SIZE`` > 1)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def init_distributed(device: torch.device) -> tuple[Optional[DistributedContext], torch.device]:
    """Join the process group torchrun described, if any.

    Parameters
    ----------
    device : torch.device
        The device asked for; a CUDA device becomes ``cuda:LOCAL_RANK``.

    Returns
    -------
    context : DistributedContext or None
        None outside torchrun (single process).
    device : torch.device
        The device this rank trains on.
    """
    if not launched_by_torchrun():
        return None, device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
        # Each rank gets its share of the cores (BLAS and OpenMP follow torch's setting).
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(local_world, 1)))
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, local_world,
                              backend), device


def shard(order: Sequence[int], rank: int, world_size: int) -> np.ndarray:
    """This rank's part of an epoch's order: padded by wrapping to a multiple of
    ``world_size``, then every ``world_size``-th item from ``rank`` (as
    ``DistributedSampler(drop_last=False)``).

    Returns
    -------
    np.ndarray of int, shape (ceil(len(order) / world_size),)
    """
    order = np.asarray(order, dtype=int)
    n_steps = -(-len(order) // world_size)
    padded = np.resize(order, n_steps * world_size)  # np.resize repeats from the start
    return padded[rank::world_size]


def broadcast_from_main(obj: Any, ctx: Optional[DistributedContext]) -> Any:
    """Rank 0's ``obj`` on every rank (``obj`` itself outside a distributed run)."""
    if ctx is None:
        return obj
    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: Optional[DistributedContext]) -> None:
    if ctx is not None:
        dist.barrier()


def shutdown(ctx: Optional[DistributedContext]) -> None:
    if ctx is not None and dist.is_initialized():
        dist.destroy_process_group()
