"""torch.distributed for training: one process per device, launched by torchrun.

`Dist` is a no-op stand-in when the process was not launched by torchrun, so the trainer and
the models call the same methods either way.
"""
from __future__ import annotations

import gc
import os

import numpy as np
import torch
import torch.distributed as dist


class Dist:
    """Rank, world size and the few collectives training needs."""

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0):
        self.rank, self.world, self.local_rank = rank, world, local_rank

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: np.ndarray) -> np.ndarray:
        """This rank's contiguous part of `items` (sizes differ by at most one)."""
        return np.array_split(items, self.world)[self.rank] if self.enabled else items

    def gather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's rows in rank order (the inverse of `shard`)."""
        if not self.enabled:
            return rows
        sizes = [torch.zeros(1, dtype=torch.long, device=rows.device) for _ in range(self.world)]
        dist.all_gather(sizes, torch.tensor([len(rows)], device=rows.device))
        longest = int(max(s.item() for s in sizes))
        padded = torch.zeros(longest, *rows.shape[1:], dtype=rows.dtype, device=rows.device)
        padded[: len(rows)] = rows
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return torch.cat([part[: int(s.item())] for part, s in zip(parts, sizes)])

    def sum(self, values: dict[str, float], device) -> dict[str, float]:
        """Sum a dict of numbers over ranks."""
        if not self.enabled:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return dict(zip(keys, t.tolist()))

    def any(self, flag: bool, device) -> bool:
        """Whether `flag` holds on some rank: every rank gets the same answer, so all stop together."""
        if not self.enabled:
            return flag
        t = torch.tensor([float(flag)], device=device)
        dist.all_reduce(t)
        return bool(t.item() > 0)

    def average_gradients(self, parameters) -> None:
        """Average the gradients of parameters that DistributedDataParallel does not manage."""
        if not self.enabled:
            return
        for p in parameters:
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= self.world

    def broadcast(self, obj):
        """Rank 0's value of a picklable object, on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group (a rank that exits without it can abort at shutdown)."""
        if self.enabled and dist.is_initialized():
            gc.collect()  # free DistributedDataParallel's reducer (held in cycles) before the group goes
            dist.barrier()  # no rank tears down its connections while another still uses them
            dist.destroy_process_group()


def from_environment() -> Dist:
    """Join the process group torchrun set up (RANK, WORLD_SIZE, LOCAL_RANK), or run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank)
