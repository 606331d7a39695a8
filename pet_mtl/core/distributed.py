"""Data-parallel training with torchrun: `torchrun --nproc_per_node=N -m pet_mtl.train hydra.run.dir=<dir> ...`.

Each rank takes its own batches of the one interleaved stream (global batch i*N + rank), gradients are averaged
by DistributedDataParallel, evaluation is sharded by batch and gathered, and rank 0 alone writes files. A step on
N ranks therefore sees exactly the batches a single process sees with `train.grad_accum` multiplied by N, and
(without dropout) gives the same update up to float summation order: tests/test_distributed.py checks that.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device_type: str) -> "Dist":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))

    def device(self, configured: str) -> torch.device:
        """The configured device (`auto`: the GPU when torch sees one); under torchrun each rank its own GPU."""
        from pet_mtl.core.device import resolve_device

        device = resolve_device(configured, "train.device")
        if device.type == "cuda" and self.world > 1:
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return device

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank."""
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def sum(self, values: list[float]) -> list[float]:
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def wrap(self, model: torch.nn.Module, device: torch.device, find_unused_parameters: bool = False) -> torch.nn.Module:
        """DDP around `model`; find_unused_parameters for models whose steps leave some parameters out (the heads
        of tasks absent from a batch, the unused MLM head of method=heads)."""
        if self.world == 1:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                                         find_unused_parameters=find_unused_parameters)
