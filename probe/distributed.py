"""Sharding a run over ``torch.distributed`` processes (gloo on CPU, nccl on GPU).

Start with ``torchrun --nproc-per-node N -m probe run ...``. Each rank takes
every N-th image (no padding, so no image is counted twice); at the end of
every pass each accumulator's declared state is reduced with tensor collectives
on the run's device (:func:`probe.state.sync_states`: ``all_reduce`` for sums
and extrema, ``all_gather`` for concatenations and top-k style merges), so
pass-dependent state (such as dissection thresholds) is global on every rank
and the tables equal those of a single process. No accumulator is pickled.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Shard:
    """This process's place in the run."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this rank writes the run directory."""
        return self.rank == 0

    def indices(self, length: int) -> list[int]:
        """This rank's data-set indices: ``rank, rank + N, rank + 2N, ...``."""
        return list(range(self.rank, length, self.world_size))


def current_shard(device: torch.device) -> Shard:
    """Join the process group when launched by ``torchrun``; single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Shard()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return Shard(dist.get_rank(), dist.get_world_size())


def any_rank(flags: Sequence[bool], shard: Shard, device: torch.device) -> list[bool]:
    """For each flag, whether it is set on any rank (one ``all_reduce`` on ``device``)."""
    if shard.world_size == 1 or not flags:
        return list(flags)
    wire = torch.tensor([int(f) for f in flags], dtype=torch.int32, device=device)
    dist.all_reduce(wire, op=dist.ReduceOp.MAX)
    return [bool(v) for v in wire.tolist()]


def broadcast_names(names: Sequence[str], shard: Shard) -> list[str]:
    """The main rank's list of names on every rank (e.g. analyses already complete)."""
    if shard.world_size == 1:
        return list(names)
    box: list[Any] = [list(names)]
    dist.broadcast_object_list(box, src=0)
    return list(box[0])


def barrier(shard: Shard) -> None:
    """Wait for every rank (no-op in a single process)."""
    if shard.world_size > 1:
        dist.barrier()
