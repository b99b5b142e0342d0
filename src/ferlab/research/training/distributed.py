"""torchrun/DDP context; a no-op for single-process runs.

Every rank holds the whole (small) dataset and takes its slice of each global batch, so the
epoch's data order is the same function of (seed, epoch) as in a single process.
"""
from __future__ import annotations

import os

import torch
from torch import nn


class Dist:
    def __init__(self, device: torch.device) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.enabled = self.world > 1
        self.device = device
        if self.enabled and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if self.enabled and device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(self.device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model)  # re-wrapped at unfreezing: DDP fixes its parameter set at construction

    def any(self, flag: bool) -> bool:
        """True on every rank if it is True on any: ranks must stop at the same epoch."""
        if not self.enabled:
            return bool(flag)
        t = torch.tensor([1 if flag else 0], device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item())

    def close(self) -> None:
        if self.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
